use super::*;
use crate::host::recording::{Call, RecordingKernel};

#[test]
fn going_down_syncs_then_asks_the_kernel_for_the_event() {
    for (event, cmd) in [
        (PowerEvent::Reboot, RebootCommand::Restart),
        (PowerEvent::Shutdown, RebootCommand::PowerOff),
    ] {
        let k = RecordingKernel::new("n");
        let e = go_down(&k, event);
        assert_eq!(k.calls(), [Call::Sync, Call::Reboot(cmd)]);
        assert_eq!(e.to_string(), "reboot(2) returned");
    }
}

#[test]
fn ctrl_alt_del_is_turned_into_a_signal() {
    let k = RecordingKernel::new("n");
    disable_ctrl_alt_del(&k);
    assert_eq!(k.calls(), [Call::Reboot(RebootCommand::CtrlAltDelOff)]);
}
