// A node program using @jupyterlab/services, as scripts and editors' notebook clients do: it
// authenticates with a token and sends an Origin that is not the server's (the REST calls
// and the kernel websocket both). jupyter_server serves such clients; so must concord.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { KernelManager, ServerConnection } from '@jupyterlab/services';
import { startConcord } from '../lib/concord.mjs';

const ORIGIN = 'http://editor.example';
const TOKEN = 'services-client-token';

/** The websocket class the client uses, sending the foreign Origin. */
class ForeignOriginWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { origin: ORIGIN });
  }
}

/** fetch, sending the foreign Origin. */
function foreignFetch(input, init) {
  const request = new Request(input, init);
  request.headers.set('Origin', ORIGIN);
  return fetch(request);
}

let concord;
before(async () => {
  concord = await startConcord({ token: TOKEN });
});
after(async () => {
  await concord?.stop();
});

test('a token client from another origin runs a kernel through @jupyterlab/services', async () => {
  // The Origin does reach the server: without the token, the same request is refused as
  // a cross-origin one (not as an anonymous one).
  const anonymous = await foreignFetch(`${concord.base}api/kernels`);
  assert.equal(anonymous.status, 404, await anonymous.text());

  const serverSettings = ServerConnection.makeSettings({
    baseUrl: concord.base,
    token: TOKEN,
    fetch: foreignFetch,
    WebSocket: ForeignOriginWebSocket,
  });
  const manager = new KernelManager({ serverSettings });
  try {
    await manager.ready;
    const kernel = await manager.startNew({ name: 'python3' });
    try {
      const future = kernel.requestExecute({ code: '1+1' });
      let result;
      future.onIOPub = (msg) => {
        if (msg.header.msg_type === 'execute_result') result = msg.content.data['text/plain'];
      };
      const reply = await future.done;
      assert.equal(reply.content.status, 'ok');
      assert.equal(result, '2');
    } finally {
      await kernel.shutdown();
    }
  } finally {
    manager.dispose();
  }
});
