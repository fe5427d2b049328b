use super::*;
use crate::host::recording::{Call, RecordingKernel};

#[test]
fn loads_in_order_skipping_comments_and_counting_only_new_ones() {
    let k = RecordingKernel::new("n")
        .with_module("loop")
        .failing_module("/lib/modules/bad.ko");
    let list = "# dependencies first\n/lib/modules/crc32c.ko.zst\n\n/lib/modules/loop.ko\n/lib/modules/bad.ko\n  /lib/modules/veth.ko.xz  \n";
    assert_eq!(load_list(&k, list), 2, "loop was loaded already, bad fails");
    assert_eq!(
        k.calls(),
        [
            Call::LoadModule("/lib/modules/crc32c.ko.zst".into()),
            Call::LoadModule("/lib/modules/veth.ko.xz".into()),
        ]
    );
    assert!(k.module_loaded("crc32c") && k.module_loaded("veth"));
}
