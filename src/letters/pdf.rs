//! Renders a letter as a PDF a GP system can file: A4, the standard Helvetica fonts (nothing to
//! embed), a header naming both organisations and the person, the sections, the author, and
//! page numbers. Text is wrapped with Helvetica's own glyph widths.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::Letter;

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const BODY: f32 = 10.5;
const LEADING: f32 = 1.35;

#[derive(Clone, Copy, PartialEq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn name(self) -> Name<'static> {
        match self {
            Font::Regular => Name(b"F1"),
            Font::Bold => Name(b"F2"),
        }
    }

    /// Width of `text` at `size` points, from the fonts' AFM metrics (ASCII; other characters
    /// are taken at the width of a digit).
    fn width(self, text: &str, size: f32) -> f32 {
        let table = match self {
            Font::Regular => &HELVETICA,
            Font::Bold => &HELVETICA_BOLD,
        };
        let units: u32 = text
            .chars()
            .map(|c| match c as u32 {
                32..=126 => u32::from(table[(c as usize) - 32]),
                _ => 556,
            })
            .sum();
        units as f32 * size / 1000.0
    }
}

/// One laid-out line.
struct Line {
    font: Font,
    size: f32,
    text: String,
    /// Space before the line, in points.
    gap: f32,
}

/// The letter as PDF bytes.
pub fn render(letter: &Letter) -> Vec<u8> {
    let width = PAGE_WIDTH - 2.0 * MARGIN;
    let mut lines = Vec::new();
    let mut add = |font: Font, size: f32, text: &str, gap: f32| {
        let mut first = true;
        for para in text.split('\n') {
            for wrapped in wrap(para, font, size, width) {
                lines.push(Line {
                    font,
                    size,
                    text: wrapped,
                    gap: if first { gap } else { 0.0 },
                });
                first = false;
            }
        }
    };
    add(Font::Bold, 15.0, &letter.from_name, 0.0);
    add(
        Font::Regular,
        BODY,
        &format!("From: {}", letter.from_identifier),
        0.0,
    );
    add(
        Font::Regular,
        BODY,
        &format!("To: {} ({})", letter.to_name, letter.to_identifier),
        0.0,
    );
    add(Font::Regular, BODY, &format!("Date: {}", letter.date), 0.0);
    if letter.urgent {
        add(
            Font::Bold,
            12.0,
            "URGENT - SAFEGUARDING: please read today",
            8.0,
        );
    }
    add(Font::Bold, 13.0, &letter.title, 12.0);
    add(Font::Bold, BODY, &letter.patient_line, 6.0);
    add(Font::Regular, BODY, &letter.referral_line, 0.0);
    for section in &letter.sections {
        add(Font::Bold, 11.5, &section.title, 14.0);
        for (i, p) in section.paragraphs.iter().enumerate() {
            add(Font::Regular, BODY, p, if i == 0 { 4.0 } else { 6.0 });
        }
    }
    add(Font::Regular, BODY, "Yours sincerely,", 18.0);
    add(Font::Bold, BODY, &letter.author_line, 14.0);
    add(Font::Regular, BODY, &letter.from_name, 0.0);

    // Pages: fill top to bottom, leaving room for the footer.
    let mut pages: Vec<Vec<(f32, &Line)>> = vec![Vec::new()];
    let mut y = PAGE_HEIGHT - MARGIN;
    for line in &lines {
        let step = line.gap + line.size * LEADING;
        if y - step < MARGIN + 20.0 {
            pages.push(Vec::new());
            y = PAGE_HEIGHT - MARGIN;
        }
        y -= step;
        pages.last_mut().expect("a page").push((y, line));
    }

    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let regular = Ref::new(3);
    let bold = Ref::new(4);
    let info = Ref::new(5);
    let first_page = 10;
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(first_page + 2 * i as i32))
        .collect();
    let mut pdf = Pdf::new();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(page_ids.len() as i32);
    pdf.type1_font(regular)
        .base_font(Name(b"Helvetica"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold)
        .base_font(Name(b"Helvetica-Bold"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&letter.title))
        .author(TextStr(&letter.author_line))
        .producer(TextStr("Work and Health Gateway"));
    let count = pages.len();
    for (n, (page_lines, id)) in pages.iter().zip(&page_ids).enumerate() {
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(*id);
        page.parent(tree)
            .media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT))
            .contents(content_id);
        let mut resources = page.resources();
        let mut fonts = resources.fonts();
        fonts.pair(Font::Regular.name(), regular);
        fonts.pair(Font::Bold.name(), bold);
        fonts.finish();
        resources.finish();
        page.finish();
        let mut content = Content::new();
        for (y, line) in page_lines {
            text(&mut content, line.font, line.size, MARGIN, *y, &line.text);
        }
        let footer = format!("{} - page {} of {count}", letter.footer_identifier, n + 1);
        text(
            &mut content,
            Font::Regular,
            8.0,
            MARGIN,
            MARGIN - 16.0,
            &footer,
        );
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

fn text(content: &mut Content, font: Font, size: f32, x: f32, y: f32, s: &str) {
    content
        .begin_text()
        .set_font(font.name(), size)
        .next_line(x, y)
        .show(Str(&win_ansi(s)))
        .end_text();
}

/// Splits `text` into lines no wider than `width`; a word longer than a line is broken.
fn wrap(text: &str, font: Font, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if font.width(&candidate, size) <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        // A word wider than the line (a long identifier or URL) is cut where it must be.
        let mut piece = String::new();
        for c in word.chars() {
            piece.push(c);
            if font.width(&piece, size) > width {
                piece.pop();
                lines.push(std::mem::take(&mut piece));
                piece.push(c);
            }
        }
        current = piece;
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

/// `s` in the fonts' WinAnsi encoding: Latin-1 as is, the common typographic marks mapped, and
/// anything else as `?`.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '…' => 0x85,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            '–' => 0x96,
            '—' => 0x97,
            _ => b'?',
        })
        .collect()
}

/// Helvetica advance widths, characters 32–126 (Adobe AFM).
const HELVETICA: [u16; 95] = [
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722, 722, 667,
    611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500,
    222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

/// Helvetica-Bold advance widths, characters 32–126 (Adobe AFM).
const HELVETICA_BOLD: [u16; 95] = [
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722, 722, 667,
    611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667,
    667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611, 611, 278, 278, 556,
    278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_to_the_width_and_breaks_long_words() {
        let text = "word ".repeat(200);
        let lines = wrap(&text, Font::Regular, BODY, 300.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| Font::Regular.width(l, BODY) <= 300.0));
        let long = "x".repeat(500);
        let lines = wrap(&long, Font::Bold, BODY, 100.0);
        assert!(lines.iter().all(|l| Font::Bold.width(l, BODY) <= 100.0));
        assert_eq!(lines.concat(), long);
        assert_eq!(wrap("", Font::Regular, BODY, 100.0), vec![String::new()]);
    }

    #[test]
    fn encodes_win_ansi() {
        assert_eq!(
            win_ansi("Café – “ok” ✓"),
            b"Caf\xe9 \x96 \x93ok\x94 ?".to_vec()
        );
    }
}
