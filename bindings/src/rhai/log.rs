//! `log::trace/dbg/info/warn/error(msg [, fields])`, `print(x)` and `debug(x)`.
//!
//! All of them become host log records with the plugin's identity and the
//! script's file, line and column; nothing a script prints reaches stdout.
//! (`debug` is a Rhai keyword, hence `log::dbg`.)

use rhai::{
    Array, Dynamic, Engine, FLOAT, FuncRegistration, INT, ImmutableString, Map, Module,
    NativeCallContext, Position,
};

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<rhai::EvalAltResult>>;

use super::context::{Ctx, convert_error};
use super::convert::to_value;
use crate::LogLevel;

/// Registers the `log` module, `print` overloads and the `debug` handler.
pub(crate) fn register(engine: &mut Engine, ctx: &Ctx) {
    let mut log = Module::new();
    for (name, level) in [
        ("trace", LogLevel::Trace),
        ("dbg", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_volatility(true)
            .set_into_module(&mut log, move |call: NativeCallContext, msg: Dynamic| {
                emit(
                    &c,
                    level,
                    &display(&msg),
                    None,
                    source_of(&call),
                    call.call_position(),
                );
            });
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_volatility(true)
            .set_into_module(
                &mut log,
                move |call: NativeCallContext, msg: Dynamic, fields: Dynamic| -> RhaiResultOf<()> {
                    let pos = call.call_position();
                    let fields =
                        match to_value(&fields).map_err(|e| convert_error("fields", e, pos))? {
                            serde_json::Value::Object(m) => m,
                            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
                        };
                    emit(
                        &c,
                        level,
                        &display(&msg),
                        Some(&fields),
                        source_of(&call),
                        pos,
                    );
                    Ok(())
                },
            );
    }
    engine.register_static_module("log", log.into());

    // `print` overloads that know where they were called from; the engine's own
    // print callback then has nothing left to do.
    macro_rules! print_for {
        ($($t:ty),*) => {$(
            let c = ctx.clone();
            engine.register_fn("print", move |call: NativeCallContext, x: $t| -> ImmutableString {
                let text = display(&Dynamic::from(x));
                emit(&c, LogLevel::Info, &text, None, source_of(&call), call.call_position());
                text.into()
            });
        )*};
    }
    print_for!(ImmutableString, INT, FLOAT, bool, (), char, Array, Map);
    engine.on_print(|_| {});
    let c = ctx.clone();
    engine.on_debug(move |text, source, pos| {
        emit(&c, LogLevel::Debug, text, None, source, pos);
    });
}

fn source_of<'a>(call: &'a NativeCallContext) -> Option<&'a str> {
    call.call_source()
}

fn emit(
    ctx: &Ctx,
    level: LogLevel,
    message: &str,
    fields: Option<&serde_json::Map<String, serde_json::Value>>,
    source: Option<&str>,
    pos: Position,
) {
    let file = source.unwrap_or(&ctx.entry);
    let file = match pos.position() {
        Some(col) => format!("{file}:{}:{col}", pos.line().unwrap_or(0)),
        None => file.to_owned(),
    };
    ctx.core().log(level, message, fields, Some(&file), None);
}

/// A value as text: strings as they are, anything else as Rhai prints it.
fn display(v: &Dynamic) -> String {
    match v.clone().into_immutable_string() {
        Ok(s) => s.to_string(),
        Err(_) => v.to_string(),
    }
}
