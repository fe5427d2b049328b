//! `basaltctl dashboard` on a terminal (live, ratatui over crossterm) or,
//! when stdout is not one or with `--once`, printed once as plain text.
//! The drawing and the state are `basaltctl::dashboard`'s; this module
//! fetches, handles keys and owns the terminal.

use crate::nodecmd::{NodeArgs, Session, nodes};
use anyhow::{Result, bail};
use basaltctl::dashboard::{self, DashboardState, Fetched};
use basaltctl::fanout::{self, Answer};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

/// The longest the one-shot table waits between its two samples of the
/// CPU counters (a rate needs two).
const ONCE_CPU_WINDOW: Duration = Duration::from_secs(1);

pub fn dashboard(args: &NodeArgs, interval: Duration, once: bool) -> Result<()> {
    if interval.is_zero() {
        bail!("--interval must be longer than 0s");
    }
    let nodes = nodes(args)?.to_vec();
    if once || !std::io::stdout().is_terminal() {
        one_shot(args, &nodes, interval.min(ONCE_CPU_WINDOW))
    } else {
        live(args, &nodes, interval)
    }
}

/// One node's session, or why it could not be opened.
fn open(args: &NodeArgs, node: &str) -> Result<Session, String> {
    Session::open_at(args, node).map_err(|e| fanout::error_chain(e.as_ref()))
}

/// A refresh through `session`; the note of a node pinned on first use.
fn refresh(
    session: &mut Session,
    log_service: Option<&str>,
) -> (Result<Fetched, String>, Option<String>) {
    let fetched = dashboard::fetch(&session.client, log_service);
    if fetched.is_err() {
        return (fetched, None);
    }
    match session.pin_seen() {
        Ok(note) => (fetched, note),
        Err(e) => (Err(format!("pinning the node: {e:#}")), None),
    }
}

/// Every node refreshed twice, `window` apart, and printed: one block per
/// node; a node that failed is reported on stderr under its name.
fn one_shot(args: &NodeArgs, nodes: &[String], window: Duration) -> Result<()> {
    let answers: Vec<Answer<(Fetched, Fetched), String>> = fanout::on_each(nodes, |n| {
        let mut s = open(args, n)?;
        let (first, note) = refresh(&mut s, None);
        let first = first?;
        if let Some(note) = note {
            eprintln!("{note}");
        }
        std::thread::sleep(window);
        let (second, _) = refresh(&mut s, None);
        Ok((first, second?))
    });
    let mut state = DashboardState::new(nodes, window);
    let mut blocks = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if let Ok((first, second)) = &a.result {
            state.update(i, Ok(first.clone()));
            state.update(i, Ok(second.clone()));
            if let Some(Ok(d)) = &state.nodes[i].data {
                blocks.push(dashboard::plain_text(&a.node, d));
            }
        }
    }
    print!("{}", blocks.join("\n"));
    let (stderr, failed) = fanout::failures(&answers);
    eprint!("{stderr}");
    match failed {
        Some(s) => Err(anyhow::anyhow!(s)),
        None => Ok(()),
    }
}

/// A node's refresh, as the fetching thread sends it to the screen.
struct Refreshed {
    index: usize,
    result: Result<Fetched, String>,
    note: Option<String>,
}

/// Refreshes every node every `interval`, at once, until the screen is
/// gone; a new log choice (node index and service) refreshes at once.
fn fetch_loop(
    mut sessions: Vec<Result<Session, String>>,
    interval: Duration,
    choices: mpsc::Receiver<Option<(usize, String)>>,
    out: mpsc::Sender<Refreshed>,
) {
    let mut log: Option<(usize, String)> = None;
    loop {
        std::thread::scope(|s| {
            for (index, session) in sessions.iter_mut().enumerate() {
                let out = out.clone();
                let service = log
                    .as_ref()
                    .filter(|(i, _)| *i == index)
                    .map(|(_, name)| name.clone());
                s.spawn(move || {
                    let (result, note) = match session {
                        Ok(s) => refresh(s, service.as_deref()),
                        Err(e) => (Err(e.clone()), None),
                    };
                    let _ = out.send(Refreshed {
                        index,
                        result,
                        note,
                    });
                });
            }
        });
        match choices.recv_timeout(interval) {
            Ok(choice) => {
                log = choice;
                // Only the newest choice matters.
                while let Ok(choice) = choices.try_recv() {
                    log = choice;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// The terminal in raw mode on the alternate screen, given back as it
/// was when this is dropped: on quitting, on an error, and (ratatui's
/// panic hook) on a panic.
struct TerminalGuard(ratatui::DefaultTerminal);

impl TerminalGuard {
    fn new() -> Result<Self> {
        match ratatui::try_init() {
            Ok(t) => Ok(Self(t)),
            Err(e) => {
                // It may have got as far as raw mode.
                ratatui::restore();
                Err(anyhow::Error::new(e).context("setting up the terminal"))
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// What a key does.
enum Key {
    Quit,
    Handled,
    Ignored,
}

fn handle_key(state: &mut DashboardState, k: KeyEvent) -> Key {
    if k.kind != KeyEventKind::Press {
        return Key::Ignored;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => return Key::Quit,
        // Raw mode turns Ctrl-C into a key, not a signal.
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Key::Quit,
        KeyCode::Right | KeyCode::Tab | KeyCode::Char('l') => state.cycle_node(true),
        KeyCode::Left | KeyCode::BackTab | KeyCode::Char('h') => state.cycle_node(false),
        KeyCode::Down | KeyCode::Char('j') => state.cycle_service(true),
        KeyCode::Up | KeyCode::Char('k') => state.cycle_service(false),
        _ => return Key::Ignored,
    }
    Key::Handled
}

fn live(args: &NodeArgs, nodes: &[String], interval: Duration) -> Result<()> {
    let sessions = nodes.iter().map(|n| open(args, n)).collect();
    let (choice_tx, choice_rx) = mpsc::channel();
    let (out_tx, out_rx) = mpsc::channel();
    // Not joined: on quitting it may be waiting on a slow node; it ends
    // with the process, or at its next send.
    std::thread::spawn(move || fetch_loop(sessions, interval, choice_rx, out_tx));
    let mut state = DashboardState::new(nodes, interval);
    let mut notes = Vec::new();
    let mut asked = None;
    let mut term = TerminalGuard::new()?;
    loop {
        while let Ok(r) = out_rx.try_recv() {
            state.update(r.index, r.result);
            notes.extend(r.note);
        }
        let choice = state.log_request();
        if choice != asked {
            let _ = choice_tx.send(choice.clone());
            asked = choice;
        }
        term.0.draw(|f| dashboard::render(&state, f))?;
        if event::poll(Duration::from_millis(200))?
            && let Event::Key(k) = event::read()?
            && let Key::Quit = handle_key(&mut state, k)
        {
            break;
        }
    }
    drop(term);
    for n in notes {
        eprintln!("{n}");
    }
    Ok(())
}
