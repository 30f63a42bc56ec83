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

#[test]
fn a_request_from_outside_is_answered_on_an_inbox_only_never_on_a_topic() {
    let nats = shared();
    let p = "rqh";
    let (dir, conf) = host_with("h", &nats.url(), p, "");
    dir.plugin(
        Runtime::Lua,
        "pricer",
        &format!("subscriptions: ['{p}.price']\n"),
        "function on_event(e) return outcome.reply({price = 42}) end\n",
    );
    let mut live = spawn(&conf);
    live.wait_for("connected", is("plughost.cluster.connected"));
    let url = nats.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use futures::StreamExt;
        let client = async_nats::connect(url).await.unwrap();
        // A request the ordinary way is answered (the host may still be
        // subscribing: a few tries).
        let mut answer = None;
        for _ in 0..20 {
            let asked = client.request(format!("{p}.price"), "{}".into());
            if let Ok(Ok(reply)) = tokio::time::timeout(Duration::from_millis(500), asked).await {
                answer = Some(reply);
                break;
            }
        }
        let answer = answer.expect("an answer on the inbox");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&answer.payload).unwrap(),
            json!({"price": 42})
        );
        // A reply subject that is a topic gets nothing.
        let mut evil = client.subscribe(format!("{p}.evil")).await.unwrap();
        client
            .publish_with_reply(format!("{p}.price"), format!("{p}.evil"), "{}".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let got = tokio::time::timeout(Duration::from_millis(1000), evil.next()).await;
        assert!(got.is_err(), "a reply was published on a topic: {got:?}");
    });
    live.signal("TERM");
    let run = live.finish();
    assert!(run.stderr.contains("is not an inbox"), "{}", run.stderr);
}
