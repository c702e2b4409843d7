//! Built-in policies, each a readable TOML file shipped in `policies/presets/`.

/// The names of the built-in presets; the first is the default.
pub const PRESET_NAMES: [&str; 5] = [
    "owner-only",
    "read-only",
    "read-write-no-execute",
    "temporary",
    "classroom",
];

/// The default preset.
pub const DEFAULT_PRESET: &str = "owner-only";

/// The TOML text of a built-in preset.
pub fn preset(name: &str) -> Option<&'static str> {
    Some(match name {
        "owner-only" => include_str!("../../../policies/presets/owner-only.toml"),
        "read-only" => include_str!("../../../policies/presets/read-only.toml"),
        "read-write-no-execute" => {
            include_str!("../../../policies/presets/read-write-no-execute.toml")
        }
        "temporary" => include_str!("../../../policies/presets/temporary.toml"),
        "classroom" => include_str!("../../../policies/presets/classroom.toml"),
        _ => return None,
    })
}
