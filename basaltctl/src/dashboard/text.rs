//! The dashboard printed once, as plain text (stdout not a terminal, or
//! `--once`): one block per node.

use super::NodeData;

/// Node `node`'s block: its summary lines, then its services as a table.
pub fn plain_text(node: &str, d: &NodeData) -> String {
    let st = &d.status;
    let signers = if st.signers.is_empty() {
        "-".to_string()
    } else {
        st.signers.join(", ")
    };
    let mut out = format!(
        "node        {node}\nhostname    {}\nmode        {}, ready {}\ngeneration  {}\nsigners     {signers}\ncpu         {}\nmemory      {}\npressure    {}\n",
        st.hostname,
        st.mode,
        yes_no(st.ready),
        st.generation,
        d.figures.cpu_text(),
        d.figures.memory_text(),
        d.figures.pressure_text(),
    );
    out.push_str(&format!(
        "{:<20} {:<12} {:<6} {:>8}\n",
        "SERVICE", "STATE", "READY", "RESTARTS"
    ));
    for s in &d.services {
        out.push_str(&format!(
            "{:<20} {:<12} {:<6} {:>8}\n",
            s.name,
            s.state,
            yes_no(s.ready),
            s.restarts
        ));
    }
    out
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}
