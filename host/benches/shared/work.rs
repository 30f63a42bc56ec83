//! The work every throughput-style benchmark measures, in each script
//! runtime: read a 5-field payload (string, integer, float, boolean, nested
//! object) and produce a derived 5-field payload.

/// The work in Lua: `derive(p)` returns the derived payload.
pub const DERIVE: &str = r#"
local function derive(p)
  return {
    name = string.upper(p.name),
    count = p.count + 1,
    ratio = p.ratio * 2.0,
    active = not p.active,
    origin = { city = p.location.city, zip = p.location.zip },
  }
end
"#;

/// The same work in Rhai.
#[allow(dead_code)]
pub const DERIVE_RHAI: &str = r#"
fn derive(p) {
    #{
        name: p.name.to_upper(),
        count: p.count + 1,
        ratio: p.ratio * 2.0,
        active: !p.active,
        origin: #{ city: p.location.city, zip: p.location.zip },
    }
}
"#;
