use super::*;
use crate::host::recording::{Call, RecordingKernel};

#[test]
fn ram_mode_mounts_and_unmounts_nothing() {
    let k = RecordingKernel::new("node");
    let place = place_state(&k, None, "STATE");
    assert_eq!(
        place,
        StatePlace {
            dir: RAM_STATE,
            ram: true,
            mounted: None
        }
    );
    release_state(&k, &place);
    assert_eq!(k.calls(), [], "nothing mounted, so nothing to unmount");
}

#[test]
fn a_state_partition_is_mounted_then_unmounted() {
    let k = RecordingKernel::new("node");
    let place = place_state(&k, Some("/dev/vdb"), "STATE");
    assert_eq!((place.dir, place.ram), (STATE_MOUNT, false));
    release_state(&k, &place);
    assert_eq!(
        k.calls(),
        [
            Call::Mount {
                target: STATE_MOUNT.into(),
                fstype: "ext4".into()
            },
            Call::Unmount(STATE_MOUNT.into()),
        ]
    );
}

#[test]
fn going_down_flushes_before_unmounting_state() {
    let k = RecordingKernel::new("node");
    let place = place_state(&k, Some("/dev/vdb"), "STATE");
    flush_and_release(&k, &k, &place, false);
    assert_eq!(
        k.calls()[1..],
        [Call::Sync, Call::Unmount(STATE_MOUNT.into())]
    );
    let e = power::go_down(&k, PowerEvent::Shutdown);
    assert_eq!(
        k.calls()[3..],
        [Call::Sync, Call::Reboot(power::RebootCommand::PowerOff)]
    );
    assert_eq!(e.kind(), std::io::ErrorKind::Other);
}

#[test]
fn a_state_mount_that_fails_falls_back_to_ram_and_unmounts_nothing() {
    let k = RecordingKernel::new("node").failing_mount(STATE_MOUNT);
    let place = place_state(&k, Some("/dev/vdb"), "STATE");
    assert!(place.ram && place.mounted.is_none());
    release_state(&k, &place);
    assert_eq!(k.calls(), []);
}

#[test]
fn pid1_tells_the_kernel_never_to_oom_kill_it() {
    let k = RecordingKernel::new("node");
    shield_from_oom_killer(&k);
    assert_eq!(k.calls(), [Call::SetOwnOomScoreAdj(-1000)]);
}

#[test]
fn going_down_from_a_disk_unmounts_state_then_ephemeral() {
    let k = RecordingKernel::new("node");
    let place = place_state(&k, Some("/dev/vda4"), "STATE");
    flush_and_release(&k, &k, &place, true);
    assert_eq!(
        k.calls()[1..],
        [
            Call::Sync,
            Call::Unmount(STATE_MOUNT.into()),
            Call::Unmount(crate::host::mounts::VAR.into())
        ]
    );
}
