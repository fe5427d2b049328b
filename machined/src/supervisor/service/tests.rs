use super::*;
use crate::host::recording::{Call, RecordingKernel};

fn service(k: &RecordingKernel, grace: Duration) -> Service {
    let mut spec = ServiceSpec::new("svc", vec!["true".into()]);
    spec.stop_grace = grace;
    Service::new(
        spec,
        16,
        None,
        Arc::new(k.clone()),
        crate::log_policy::KnownSecrets::new(),
    )
}

fn pid() -> Pid {
    Pid::from_raw(4242).unwrap()
}

const EXITED: ExitInfo = ExitInfo {
    code: None,
    signal: Some(15),
};

/// A service that exits on SIGTERM: TERM, then KILL for whatever is left
/// of its group; no waiting out the grace.
#[tokio::test]
async fn a_stop_honoured_sends_term_then_kills_the_rest_of_the_group() {
    let k = RecordingKernel::new("n");
    let svc = service(&k, Duration::from_secs(30));
    let (tx, rx) = oneshot::channel();
    tx.send(EXITED).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(svc.terminate(pid(), rx).await, Some(EXITED));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        k.calls(),
        [
            Call::SignalGroup {
                pgid: 4242,
                signal: GroupSignal::Term
            },
            Call::SignalGroup {
                pgid: 4242,
                signal: GroupSignal::Kill
            },
        ]
    );
    assert_eq!(svc.run_state().state, ServiceState::Stopping);
}

/// A service that ignores SIGTERM: TERM, the grace, KILL; it is reaped
/// after the KILL and its group is swept once more.
#[tokio::test]
async fn a_stop_ignored_sends_kill_after_the_grace() {
    let k = RecordingKernel::new("n");
    let grace = Duration::from_millis(200);
    let svc = service(&k, grace);
    let (tx, rx) = oneshot::channel();
    let watcher = k.clone();
    let reaped = tokio::spawn(async move {
        // Exit only once SIGKILL was sent.
        while watcher.signals() != [GroupSignal::Term, GroupSignal::Kill] {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = tx.send(ExitInfo {
            code: None,
            signal: Some(9),
        });
    });
    let started = std::time::Instant::now();
    let info = svc.terminate(pid(), rx).await;
    assert!(started.elapsed() >= grace, "{:?}", started.elapsed());
    assert_eq!(info.and_then(|i| i.signal), Some(9));
    reaped.await.unwrap();
    assert_eq!(
        k.signals(),
        [GroupSignal::Term, GroupSignal::Kill, GroupSignal::Kill]
    );
}
