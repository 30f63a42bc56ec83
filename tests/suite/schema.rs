//! SPEC §12 config schemas: `config_schema` checked at load, at `check` and on live changes.
