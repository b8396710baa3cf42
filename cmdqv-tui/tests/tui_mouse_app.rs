//! Mouse hit-testing against what was drawn: at every snapshot size, a click on each header
//! cell the frame shows sorts by that column (a second click reverses), a click on a row
//! selects that row's queue and a second one opens it, and the wheel moves the selection.

#[path = "tui_fixture.rs"]
mod tui_fixture;

use cmdqv_tui::tui::config::Config;
use cmdqv_tui::tui::{App, SortColumn, TuiOptions};
use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZES: [(u16, u16); 3] = [(80, 24), (120, 40), (200, 60)];

fn mouse(kind: MouseEventKind, column: u16, row: u16) -> MouseEvent {
    MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    }
}

fn click(app: &mut App, x: u16, y: u16) -> bool {
    app.on_mouse(mouse(MouseEventKind::Down(MouseButton::Left), x, y))
}

fn draw(app: &mut App, term: &mut Terminal<TestBackend>) -> Vec<String> {
    term.draw(|f| app.draw(f)).unwrap();
    let buf = term.backend().buffer().clone();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect()
        })
        .collect()
}

/// Column (in cells) of `needle` on `line`, which is drawn one symbol per cell.
fn cell_of(line: &str, needle: &str) -> Option<u16> {
    let byte = line.find(needle)?;
    Some(line[..byte].chars().count() as u16)
}

#[test]
fn header_clicks_sort_by_the_column_under_the_pointer() {
    for (w, h) in SIZES {
        let mut app = App::new(TuiOptions::default());
        app.update(tui_fixture::summary());
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        let screen = draw(&mut app, &mut term);
        let y = screen.iter().position(|l| l.contains(" NAME ")).unwrap() as u16;
        let header = screen[y as usize].clone();
        let mut checked = 0;
        for col in SortColumn::ALL {
            // Titles followed by a space, so `p99` is not found inside another title.
            let Some(x) = cell_of(&header, &format!(" {} ", col.title())) else {
                continue;
            };
            let x = x + 1;
            assert!(click(&mut app, x, y), "{w}x{h} {col:?}");
            let (sorted, desc) = app.sort();
            assert_eq!(sorted, col, "{w}x{h}: click at x={x} on {header}");
            assert_eq!(desc, col.descending_by_default());
            let screen = draw(&mut app, &mut term);
            click(&mut app, x, y);
            assert_eq!(app.sort(), (col, !desc), "{w}x{h}: a second click reverses");
            let _ = screen;
            draw(&mut app, &mut term);
            checked += 1;
        }
        assert!(
            checked >= 8,
            "{w}x{h}: only {checked} headers found in {header}"
        );
    }
}

#[test]
fn row_clicks_select_then_open_and_the_wheel_moves() {
    for (w, h) in SIZES {
        let mut app = App::new(TuiOptions::default());
        app.update(tui_fixture::summary());
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        let screen = draw(&mut app, &mut term);
        let y = screen.iter().position(|l| l.contains("vcmdq2")).unwrap() as u16;
        let x = cell_of(&screen[y as usize], "vcmdq2").unwrap();
        assert!(click(&mut app, x, y));
        assert_eq!(app.selected_queue(), Some("vcmdq2"), "{w}x{h}");
        assert!(!app.detail_open());
        draw(&mut app, &mut term);
        assert!(click(&mut app, x, y));
        assert!(app.detail_open(), "{w}x{h}: the second click opens");
        // In the detail view the wheel goes to the next queue, as ↓ does.
        assert!(app.on_mouse(mouse(MouseEventKind::ScrollDown, x, y)));
        assert_eq!(app.selected_queue(), Some("vcmdq3"));
        app.on_key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Esc,
            KeyModifiers::NONE,
        ));
        draw(&mut app, &mut term);
        // On the table a notch moves the selection three rows up (stopping at the top).
        assert!(app.on_mouse(mouse(MouseEventKind::ScrollUp, x, y)));
        assert_eq!(app.selected_queue(), Some("vcmdq0"));
        // Moves and clicks off every table do nothing.
        assert!(!app.on_mouse(mouse(MouseEventKind::Moved, x, y)));
        assert!(!click(&mut app, 0, h - 1));
    }
}

#[test]
fn without_capture_mouse_events_do_nothing() {
    let cfg = Config {
        mouse: false,
        ..Config::default()
    };
    let mut app = App::with_config(TuiOptions::default(), &cfg);
    app.update(tui_fixture::summary());
    let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let screen = draw(&mut app, &mut term);
    let y = screen.iter().position(|l| l.contains(" NAME ")).unwrap() as u16;
    let x = cell_of(&screen[y as usize], " p99 ").unwrap() + 1;
    assert!(!click(&mut app, x, y));
    assert_eq!(app.sort(), (SortColumn::Id, false));
}
