//! Key dispatch: the keymap data drives what every key does, the footer and the help.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use cmdqv_tui::tui::keymap::{self, Context, KEYMAP};
use cmdqv_tui::tui::{Action, App, Control, SortColumn, TuiOptions, View, help_text};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    // Terminals report upper-case letters and shifted symbols with SHIFT set.
    let mods = if c.is_ascii_uppercase() || "?+".contains(c) {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    KeyEvent::new(KeyCode::Char(c), mods)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn app() -> App {
    let mut a = App::new(TuiOptions::default());
    a.update(tui_fixture::summary());
    a
}

#[test]
fn quit_keys_send_quit() {
    let mut a = app();
    assert_eq!(a.on_key(ch('q')), Some(Control::Quit));
    assert!(a.should_quit());
    let mut a = app();
    assert_eq!(a.on_key(ctrl('c')), Some(Control::Quit));
    assert!(a.should_quit());
}

#[test]
fn pause_rate_and_recording_become_controls() {
    let mut a = app();
    assert_eq!(a.on_key(ch(' ')), Some(Control::Pause(true)));
    assert!(a.paused());
    assert_eq!(a.on_key(ch(' ')), Some(Control::Pause(false)));
    assert!(!a.paused());
    assert_eq!(a.refresh_hz(), 10);
    assert_eq!(a.on_key(ch('+')), Some(Control::RefreshHz(15)));
    assert_eq!(a.on_key(ch('=')), Some(Control::RefreshHz(20)));
    assert_eq!(a.on_key(ch('-')), Some(Control::RefreshHz(15)));
    for _ in 0..10 {
        a.on_key(ch('+'));
    }
    assert_eq!(a.refresh_hz(), 60);
    assert_eq!(
        a.on_key(ch('+')),
        None,
        "no message when the rate does not change"
    );
    for _ in 0..10 {
        a.on_key(ch('-'));
    }
    assert_eq!(a.refresh_hz(), 1);
    assert_eq!(a.on_key(ch('r')), Some(Control::ToggleRecording));
}

#[test]
fn key_release_is_ignored() {
    let mut a = app();
    let mut k = ch('q');
    k.kind = KeyEventKind::Release;
    assert_eq!(a.on_key(k), None);
    assert!(!a.should_quit());
}

#[test]
fn tab_cycles_views_and_digits_jump() {
    let mut a = app();
    assert_eq!(a.view(), View::Queues);
    a.on_key(key(KeyCode::Tab));
    assert_eq!(a.view(), View::Log);
    a.on_key(key(KeyCode::Tab));
    assert_eq!(a.view(), View::Probes);
    a.on_key(key(KeyCode::Tab));
    assert_eq!(a.view(), View::Queues);
    a.on_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(a.view(), View::Probes);
    a.on_key(ch('2'));
    assert_eq!(a.view(), View::Log);
    a.on_key(ch('1'));
    assert_eq!(a.view(), View::Queues);
}

#[test]
fn help_and_detail_open_and_close() {
    let mut a = app();
    a.on_key(ch('?'));
    assert!(a.help_open());
    a.on_key(key(KeyCode::Esc));
    assert!(!a.help_open());
    a.on_key(ch('?'));
    a.on_key(ch('?'));
    assert!(!a.help_open());

    a.on_key(key(KeyCode::Enter));
    assert!(a.detail_open());
    // Inside the detail view, arrows move to the next queue.
    let before = a.selected_queue().map(str::to_string);
    a.on_key(key(KeyCode::Down));
    assert_ne!(a.selected_queue().map(str::to_string), before);
    assert!(a.detail_open());
    a.on_key(key(KeyCode::Esc));
    assert!(!a.detail_open());
}

#[test]
fn filter_typing_takes_letters_that_are_also_keys() {
    let mut a = app();
    a.on_key(ch('/'));
    assert!(a.editing_filter());
    for c in "vcmdq1q".chars() {
        assert_eq!(a.on_key(ch(c)), None);
    }
    assert!(!a.should_quit(), "q while typing is text, not quit");
    assert_eq!(a.filter(View::Queues), "vcmdq1q");
    a.on_key(key(KeyCode::Backspace));
    assert_eq!(a.filter(View::Queues), "vcmdq1");
    a.on_key(key(KeyCode::Enter));
    assert!(!a.editing_filter());
    let names: Vec<_> = a.visible_queues().iter().map(|q| q.name.clone()).collect();
    assert_eq!(names, ["vcmdq1"]);
    assert_eq!(
        a.selected_queue(),
        Some("vcmdq1"),
        "selection follows the filter"
    );
    // Esc clears an applied filter.
    a.on_key(key(KeyCode::Esc));
    assert_eq!(a.filter(View::Queues), "");
    // Esc while typing cancels.
    a.on_key(ch('/'));
    a.on_key(ch('x'));
    a.on_key(key(KeyCode::Esc));
    assert!(!a.editing_filter());
    assert_eq!(a.filter(View::Queues), "");
    // Ctrl-C still quits while typing.
    a.on_key(ch('/'));
    assert_eq!(a.on_key(ctrl('c')), Some(Control::Quit));
}

#[test]
fn sort_keys_cycle_and_reverse() {
    let mut a = app();
    assert_eq!(a.sort(), (SortColumn::Id, false));
    a.on_key(ch('s'));
    assert_eq!(a.sort(), (SortColumn::Name, false));
    a.on_key(ch('S'));
    assert_eq!(a.sort(), (SortColumn::Name, true));
    for _ in 0..SortColumn::ALL.len() - 1 {
        a.on_key(ch('s'));
    }
    assert_eq!(a.sort().0, SortColumn::Id, "s wraps around every column");
}

#[test]
fn log_follow_toggles_with_f_and_scrolling() {
    let mut a = app();
    a.on_key(ch('2'));
    assert!(a.log_follow());
    a.on_key(ch('f'));
    assert!(!a.log_follow());
    a.on_key(ch('f'));
    assert!(a.log_follow());
    a.on_key(key(KeyCode::PageUp));
    assert!(!a.log_follow(), "scrolling back stops following");
    a.on_key(key(KeyCode::End));
    assert!(a.log_follow(), "going to the end follows again");
    a.on_key(key(KeyCode::Up));
    assert!(!a.log_follow());
    a.on_key(key(KeyCode::Down));
    assert!(
        a.log_follow(),
        "scrolling back down to the end follows again"
    );
}

/// Every key of every binding dispatches to that binding's action in its own context, unless
/// an earlier binding of the same context already claims the key.
#[test]
fn keymap_data_drives_dispatch() {
    for (i, b) in KEYMAP.iter().enumerate() {
        for k in b.keys {
            let ev = KeyEvent::new(k.code, k.mods);
            let shadowed = KEYMAP[..i]
                .iter()
                .any(|e| e.context == b.context && e.keys.iter().any(|ek| ek.matches(&ev)));
            if !shadowed {
                assert_eq!(
                    keymap::lookup(&[b.context], &ev),
                    Some(b.action),
                    "binding {:?} {:?}",
                    b.context,
                    b.label()
                );
            }
        }
    }
}

#[test]
fn every_action_has_a_key_and_a_description() {
    for b in KEYMAP {
        assert!(!b.keys.is_empty(), "{:?} has no key", b.action);
        assert!(!b.help.is_empty(), "{} has no help", b.label());
    }
    // The actions the issue requires are all bound.
    for a in [
        Action::Quit,
        Action::ToggleHelp,
        Action::Back,
        Action::NextView,
        Action::TogglePause,
        Action::RateUp,
        Action::RateDown,
        Action::ToggleRecording,
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::StartFilter,
        Action::SortNext,
        Action::SortReverse,
        Action::OpenDetail,
        Action::ToggleFollow,
    ] {
        assert!(KEYMAP.iter().any(|b| b.action == a), "{a:?} is not bound");
    }
}

#[test]
fn key_names_are_what_users_press() {
    let names: Vec<String> = KEYMAP.iter().map(|b| b.label()).collect();
    for expected in [
        "q",
        "Ctrl-C",
        "space",
        "?",
        "Tab",
        "Shift-Tab",
        "↑ k",
        "PgUp",
        "+ =",
        "Enter",
        "Esc",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "no binding labelled {expected}: {names:?}"
        );
    }
}

#[test]
fn help_lists_every_binding() {
    let text = help_text();
    for b in KEYMAP {
        let line = format!("  {}  {}", b.label(), b.help);
        assert!(text.contains(&line), "help lacks {line:?}:\n{text}");
    }
    for cx in Context::ALL {
        if KEYMAP.iter().any(|b| b.context == cx) {
            assert!(text.contains(cx.title()));
        }
    }
}

#[test]
fn footer_hints_come_from_the_keymap() {
    let a = app();
    let hints = keymap::hints(&a.contexts());
    assert!(!hints.is_empty());
    for (label, word) in &hints {
        assert!(
            KEYMAP
                .iter()
                .any(|b| b.keys[0].name() == *label && b.hint == Some(*word)),
            "hint {label} {word} is not in the keymap"
        );
    }
    let words: Vec<_> = hints.iter().map(|h| h.1).collect();
    for w in ["detail", "sort", "filter", "pause", "quit", "help"] {
        assert!(words.contains(&w), "queue view footer lacks {w}: {words:?}");
    }
}
