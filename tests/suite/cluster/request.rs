//! `bus.request` and `outcome.reply` across hosts (SPEC §4, §14): a request
//! crosses as a NATS request, the reply comes back to the asking plugin.

use std::time::Duration;

use serde_json::json;

use super::shared::host_with;
use super::*;
use crate::support::Runtime;

#[test]
fn a_plugin_asks_a_plugin_on_another_host_and_gets_its_reply() {
    let nats = shared();
    let p = "rq";
    let (a_dir, a_conf) = host_with("a", &nats.url(), p, "");
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, "");
    // A asks (Lua); B answers (Rhai). A request nobody answers times out,
    // an error the script catches.
    a_dir.plugin(
        Runtime::Lua,
        "asker",
        &format!("subscriptions: ['{p}.ask']\n"),
        &format!(
            "function on_event(e)\n  \
               local reply = bus.request('{p}.price', {{item = e.payload.item}}, 3000)\n  \
               bus.publish('{p}.answer', {{item = e.payload.item, price = reply.price, by = reply.host}})\n  \
               local ok, err = pcall(bus.request, '{p}.nobody', {{}}, 300)\n  \
               bus.publish('{p}.unanswered', {{ok = ok, err = tostring(err)}})\n\
             end\n"
        ),
    );
    b_dir.plugin(
        Runtime::Rhai,
        "pricer",
        &format!("subscriptions: ['{p}.price']\n"),
        "fn on_event(e) { outcome::reply(#{price: 42, host: \"b\", item: e.payload.item}) }\n",
    );
    // A shared plugin on both hosts answers through its queue group, from
    // whichever host the group picks, this one included.
    for (dir, host) in [(&a_dir, "a"), (&b_dir, "b")] {
        dir.plugin(
            Runtime::Lua,
            "quoter",
            &format!("subscriptions: ['{p}.quote']\ncluster:\n  shared: true\n"),
            &format!("function on_event(e) return outcome.reply({{host = '{host}', n = e.payload.n}}) end\n"),
        );
    }
    a_dir.plugin(
        Runtime::Lua,
        "collector",
        &format!("subscriptions: ['{p}.collect']\n"),
        &format!(
            "function on_event(e)\n  local got = {{}}\n  \
               for n = 1, 20 do got[n] = bus.request('{p}.quote', {{n = n}}, 3000).n end\n  \
               bus.publish('{p}.collected', {{got = got}})\n\
             end\n"
        ),
    );
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    warm_up(&mut a, &mut [&mut b], p);
    a.send(&json!({"topic": format!("{p}.ask"), "payload": {"item": "tea"}}));
    let answer = a.wait_for("the answer", is("rq.answer"));
    assert_eq!(
        answer["payload"],
        json!({"item": "tea", "price": 42, "by": "b"}),
        "{answer}"
    );
    let unanswered = a.wait_for("the timeout", is("rq.unanswered"));
    assert_eq!(unanswered["payload"]["ok"], false);
    let err = unanswered["payload"]["err"].as_str().unwrap();
    assert!(err.contains("rq.nobody") && err.contains("300"), "{err}");
    assert!(err.contains("main.lua:4"), "names the line: {err}");
    a.send(&json!({"topic": format!("{p}.collect"), "payload": {}}));
    let collected = a.wait_for("the quotes", is("rq.collected"));
    assert_eq!(
        collected["payload"]["got"],
        json!((1..=20).collect::<Vec<_>>())
    );
    // The request reached B as an event, once.
    b.read_for(Duration::from_millis(300));
    assert_eq!(count(&b.events(), "rq.price", None), 1);
}
