//! The Rhai scaffold's script, `main.rhai`: every hook, each with a comment
//! saying when it runs, and how `config` and `state` reach every function.
//! `@name@` stands for the plugin's name.

/// `main.rhai`.
pub(super) const MAIN_RHAI: &str = r#"// @name@: greets the name of each @name@.in event on @name@.out.
//
// Every hook is optional: delete the ones you do not need. The bindings
// used here (bus, config, state, log, outcome) and the others (telemetry,
// timer) are described in docs/rhai.md of the plughost repository.
//
// Rhai functions cannot see the script's top-level variables, so the host
// makes two names reachable from every function, hooks and helpers alike:
// `config`, the manifest's config (read-only), and `state`, a map that
// survives reloads. Change `state` in place (`state.count += 1`); never
// assign a new map to `state` itself.

// Runs once after the plugin loads, and again after each reload, before any
// event. An error here keeps the plugin from starting.
fn init() {
    // `state` survives reloads: set a key only when it is not there yet.
    if !("count" in state) {
        state.count = 0;
    }
    log::info(`greeting with ${config.greeting}`);
}

// Runs for each event matching `subscriptions` in plugin.yaml, one at a
// time, in publish order. Any value but an outcome (or `false`)
// acknowledges the event; an error thrown dead-letters it, and the plugin
// goes on with the next one.
fn on_event(event) {
    let name = event.payload.name;
    if type_of(name) != "string" {
        // Dead-letters the event (on plughost.dead_letter) with this reason.
        return outcome::drop("payload.name must be a string");
    }
    state.count += 1;
    bus::publish("@name@.out", #{
        text: greeting(name),
        count: state.count,
    });
}

// Runs when a save of plugin.yaml changed only `config`; `config` already
// holds the new values. Without this hook the plugin is reloaded.
fn on_config(new_config) {
    log::info(`greeting now with ${new_config.greeting}`);
}

// Runs before the plugin stops: host shutdown, unload, or a reload
// replacing it.
fn shutdown() {
    log::info(`greeted ${state.count} time(s)`);
}

// A helper: it reads `config` directly, like the hooks.
fn greeting(name) {
    `${config.greeting}, ${name}!`
}
"#;
