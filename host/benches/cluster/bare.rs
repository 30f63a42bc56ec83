//! The bare loops a user would write by hand: core NATS (2) and JetStream (3).

use super::*;

/// A client whose subscriptions hold a whole run: core NATS has no flow
/// control, and with async-nats's default (65,536 messages) a relay slower
/// than its publisher loses the rest (plughost's export buffer is sized the
/// same way, [`cluster`]).
pub(crate) async fn client(url: &str, n: u64) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .subscription_capacity((n as usize + 1_000).max(65_536))
        .connect(url)
        .await
        .expect("connect to nats-server")
}

/// Client 1 → NATS → client 2 (parse, publish) → NATS → client 1; events per second.
pub(crate) fn bare_core(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let one = client(url, n).await;
        let two = client(url, n).await;
        let mut there = two.subscribe("there.>").await.unwrap();
        two.flush().await.unwrap();
        let relay = tokio::spawn(async move {
            while let Some(m) = there.next().await {
                let v: Value = serde_json::from_slice(&m.payload).expect("a JSON body");
                let body = serde_json::to_vec(&v).unwrap();
                two.publish_with_headers("back.x", m.headers.unwrap_or_default(), body.into())
                    .await
                    .unwrap();
            }
        });
        let mut back = one.subscribe("back.>").await.unwrap();
        one.flush().await.unwrap();

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                back.next().await.expect("the subscription is open");
                got += 1;
                counter.store(got, Ordering::Relaxed);
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        for (i, p) in inputs.iter().enumerate() {
            let body = serde_json::to_vec(p).unwrap();
            one.publish_with_headers("there.x", headers(i as u64), body.into())
                .await
                .unwrap();
        }
        let end = arrival(
            "bare loop",
            counting,
            &arrived,
            n,
            String::new,
            stall_limit(),
        )
        .await;
        let run = clock.stop(end, n);
        relay.abort();
        run
    })
}

/// Publishes to a stream (every ack awaited) and reads with a pull consumer
/// acking each; events per second.
pub(crate) fn bare_jetstream(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let one = async_nats::connect(url).await.expect("connect client 1");
        let two = async_nats::connect(url).await.expect("connect client 2");
        let js = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(1024)
            .backpressure_on_inflight(true)
            .build(one);
        let _ = js.delete_stream(STREAM).await;
        js.create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["js.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
        let reader = jetstream::new(two);
        let consumer: consumer::PullConsumer = reader
            .get_stream(STREAM)
            .await
            .unwrap()
            .create_consumer(consumer::pull::Config {
                durable_name: Some("relay".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("create the consumer");

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            let mut got = 0;
            while got < n {
                let m = messages
                    .next()
                    .await
                    .expect("the consumer is open")
                    .expect("a message");
                let _v: Value = serde_json::from_slice(&m.payload).expect("a JSON body");
                m.ack().await.unwrap();
                got += 1;
                counter.store(got, Ordering::Relaxed);
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        let mut acks = VecDeque::new();
        for (i, p) in inputs.iter().enumerate() {
            let body = serde_json::to_vec(p).unwrap();
            let ack = js
                .publish_with_headers("js.x", headers(i as u64), body.into())
                .await
                .unwrap();
            acks.push_back(ack);
            if acks.len() >= 1024 {
                acks.pop_front().unwrap().await.expect("the stream's ack");
            }
        }
        for ack in acks {
            ack.await.expect("the stream's ack");
        }
        let end = arrival(
            "bare JetStream loop",
            counting,
            &arrived,
            n,
            String::new,
            stall_limit(),
        )
        .await;
        let run = clock.stop(end, n);
        let _ = js.delete_stream(STREAM).await;
        run
    })
}

// ---------------------------------------------------------------------------
