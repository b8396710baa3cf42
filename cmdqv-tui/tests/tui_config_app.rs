//! The config file's settings reach the UI: the first view, the queue table's columns in the
//! configured order, the theme (NO_COLOR still wins), and rebound keys in dispatch, footer and
//! help alike.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use std::path::Path;

use cmdqv_tui::tui::config::parse;
use cmdqv_tui::tui::{App, Control, TuiOptions, View};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

fn app(text: &str, no_color: bool) -> App {
    let cfg = parse(text, Path::new("t.toml")).unwrap();
    let opts = TuiOptions {
        refresh_hz: cfg.refresh_hz,
        no_color,
    };
    let mut a = App::with_config(opts, &cfg);
    a.update(tui_fixture::summary());
    a
}

fn lines(a: &mut App) -> (Vec<String>, ratatui::buffer::Buffer) {
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    term.draw(|f| a.draw(f)).unwrap();
    let buf = term.backend().buffer().clone();
    let text = (0..buf.area.height)
        .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
        .collect();
    (text, buf)
}

#[test]
fn view_columns_and_order_follow_the_file() {
    let mut a = app(
        "[ui]\nview = \"log\"\nrefresh_hz = 30\n[queues]\ncolumns = [\"cerr\", \"name\", \"p99\"]\n",
        false,
    );
    assert_eq!(a.view(), View::Log);
    assert_eq!(a.refresh_hz(), 30);
    a.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::NONE));
    let (text, _) = lines(&mut a);
    let header = text.iter().find(|l| l.contains("NAME")).unwrap();
    let cols: Vec<&str> = header
        .trim_matches(|c| c == '│' || c == ' ')
        .split_whitespace()
        .collect();
    assert_eq!(cols, ["CERR", "NAME", "p99"], "{header}");
    let row = text.iter().find(|l| l.contains("vcmdq1")).unwrap();
    assert!(row.contains("ILL"), "{row}");
}

#[test]
fn themes_colour_the_ui_and_no_color_wins() {
    let title_fg = |a: &mut App| {
        let (text, buf) = lines(a);
        let y = text.iter().position(|l| l.contains("NAME")).unwrap();
        let x = text[y].find("NAME").unwrap();
        let x = text[y][..x].chars().count() as u16;
        buf[(x, y as u16)].fg
    };
    assert_eq!(title_fg(&mut app("", false)), Color::Cyan);
    assert_eq!(
        title_fg(&mut app("[ui]\ntheme = \"light\"\n", false)),
        Color::Blue
    );
    let hc = title_fg(&mut app("[ui]\ntheme = \"high-contrast\"\n", false));
    assert_eq!(hc, Color::White);
    for theme in ["dark", "light", "high-contrast"] {
        let mut a = app(&format!("[ui]\ntheme = \"{theme}\"\n"), true);
        assert_eq!(title_fg(&mut a), Color::Reset, "{theme} under NO_COLOR");
    }
}

#[test]
fn rebound_keys_drive_dispatch_footer_and_help() {
    let mut a = app("[keys]\nquit = [\"x\"]\nsort_next = [\"o\"]\n", false);
    let key = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    assert_eq!(a.on_key(key('q')), None, "q is no longer bound");
    a.on_key(key('o'));
    assert_ne!(a.sort().0, cmdqv_tui::tui::SortColumn::Id, "o sorts");
    let (text, _) = lines(&mut a);
    let footer = text.last().unwrap();
    assert!(
        footer.contains("x quit") && footer.contains("o sort"),
        "{footer}"
    );
    a.on_key(KeyEvent::new(KeyCode::Char('?'), KeyModifiers::SHIFT));
    let (text, _) = lines(&mut a);
    assert!(text.iter().any(|l| l.contains(" x ") && l.contains("quit")));
    a.on_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    assert_eq!(a.on_key(key('x')), Some(Control::Quit));
}
