//! Documents into chunks for embedding: Markdown and HTML are cut into sections at their headings, each
//! section into sentences, and sentences are gathered into chunks of at most `max_tokens` tokens that
//! overlap by their last sentences (up to `overlap_tokens`), never across a heading. A sentence longer than
//! a chunk is cut between words; a word longer than a chunk is cut on its own.

/// A section of a document: the headings above it (outermost first) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Heading path, e.g. `["Install", "Linux"]`.
    pub headings: Vec<String>,
    /// The section's text (paragraphs separated by blank lines).
    pub text: String,
}

/// One chunk to embed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The heading path joined with " › " (empty for text without headings).
    pub heading: String,
    /// The chunk's text.
    pub text: String,
}

/// Sections of a Markdown text: ATX headings (`#` to `######`) start sections; fenced code is kept as text
/// (a `#` inside it is not a heading).
pub fn markdown_sections(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let mut fence: Option<&str> = None;
    let flush = |headings: &[(usize, String)], body: &mut String, sections: &mut Vec<Section>| {
        if !body.trim().is_empty() {
            sections.push(Section {
                headings: headings.iter().map(|(_, title)| title.clone()).collect(),
                text: std::mem::take(body),
            });
        }
        body.clear();
    };
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
            body.push_str(line);
            body.push('\n');
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            body.push_str(line);
            body.push('\n');
            continue;
        }
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let rest = &trimmed[level..];
        if (1..=6).contains(&level) && (rest.is_empty() || rest.starts_with([' ', '\t'])) {
            flush(&headings, &mut body, &mut sections);
            let title = rest.trim().trim_end_matches('#').trim().to_string();
            headings.retain(|(depth, _)| *depth < level);
            headings.push((level, title));
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    flush(&headings, &mut body, &mut sections);
    sections
}

/// Sections of an HTML text: `<h1>`..`<h6>` start sections; scripts, styles and comments are dropped;
/// block elements end paragraphs; character references are decoded.
pub fn html_sections(html: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    let mut heading: Option<(usize, String)> = None;
    let mut rest = html;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            push_text(&mut heading, &mut body, rest);
            break;
        };
        push_text(&mut heading, &mut body, &rest[..open]);
        rest = &rest[open..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(end) = rest.find('>') else {
            push_text(&mut heading, &mut body, rest);
            break;
        };
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !closing && (name == "script" || name == "style") {
            let close = format!("</{name}");
            let at = rest.to_ascii_lowercase().find(&close).unwrap_or(rest.len());
            rest = &rest[at..];
            continue;
        }
        let level = match name.as_bytes() {
            [b'h', digit @ b'1'..=b'6'] => Some(usize::from(digit - b'0')),
            _ => None,
        };
        match (level, closing) {
            (Some(level), false) => {
                if !body.trim().is_empty() {
                    sections.push(Section {
                        headings: headings.iter().map(|(_, title)| title.clone()).collect(),
                        text: std::mem::take(&mut body),
                    });
                }
                body.clear();
                heading = Some((level, String::new()));
            }
            (Some(_), true) => {
                if let Some((level, title)) = heading.take() {
                    headings.retain(|(depth, _)| *depth < level);
                    headings.push((level, title.split_whitespace().collect::<Vec<_>>().join(" ")));
                }
            }
            (None, _) => {
                if matches!(
                    name.as_str(),
                    "p" | "div"
                        | "br"
                        | "li"
                        | "tr"
                        | "section"
                        | "article"
                        | "pre"
                        | "blockquote"
                        | "table"
                        | "ul"
                        | "ol"
                ) {
                    // A block inside a heading that was never closed ends the heading there.
                    if let Some((level, title)) = heading.take() {
                        headings.retain(|(depth, _)| *depth < level);
                        headings.push((level, title.split_whitespace().collect::<Vec<_>>().join(" ")));
                    }
                    body.push_str("\n\n");
                }
            }
        }
    }
    if !body.trim().is_empty() {
        sections.push(Section {
            headings: headings.iter().map(|(_, title)| title.clone()).collect(),
            text: body,
        });
    }
    sections
}

fn push_text(heading: &mut Option<(usize, String)>, body: &mut String, text: &str) {
    let decoded = decode_entities(text);
    match heading {
        Some((_, title)) => title.push_str(&decoded),
        None => body.push_str(&decoded),
    }
}

/// HTML character references: the common named ones and numeric ones.
fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.bytes().take(12).position(|byte| byte == b';');
        let decoded = end.and_then(|end| {
            let name = &rest[1..end];
            let character = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|decimal| decimal.parse().ok()))
                    .map(|code| if code == 0 { 0xFFFD } else { code })
                    .and_then(char::from_u32),
            };
            character.map(|character| (character, end))
        });
        match decoded {
            Some((character, end)) => {
                out.push(character);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Sentences of a text: paragraphs (blank lines) end one, as do `.`, `!`, `?` and their CJK forms followed by
/// whitespace (CJK forms end one anywhere). Lines within a paragraph are joined with spaces.
pub fn sentences(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for paragraph in text.split("\n\n") {
        let joined = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut start = 0;
        let characters: Vec<(usize, char)> = joined.char_indices().collect();
        for (position, (at, c)) in characters.iter().enumerate() {
            let next = characters.get(position + 1).map(|(_, next)| *next);
            let ends = matches!(c, '。' | '！' | '？')
                || (matches!(c, '.' | '!' | '?') && next.is_none_or(|next| next == ' '));
            if ends {
                let end = at + c.len_utf8();
                let sentence = joined[start..end].trim();
                if !sentence.is_empty() {
                    found.push(sentence.to_string());
                }
                start = end;
            }
        }
        let tail = joined[start..].trim();
        if !tail.is_empty() {
            found.push(tail.to_string());
        }
    }
    found
}

/// Chunks of `sections`: sentences gathered up to `max_tokens` (as `tokens` counts them), each chunk after
/// the first of a section starting with the previous chunk's last sentences, up to `overlap_tokens`.
pub fn chunks(
    sections: &[Section],
    tokens: &dyn Fn(&str) -> usize,
    max_tokens: usize,
    overlap_tokens: usize,
) -> Vec<Chunk> {
    let max_tokens = max_tokens.max(1);
    let mut out = Vec::new();
    for section in sections {
        // The model reads the heading path before each chunk: it takes at most half the budget.
        let heading = fit(&section.headings.join(" › "), tokens, max_tokens / 2);
        let max_tokens = (max_tokens - tokens(&heading)).max(1);
        let pieces: Vec<(String, usize)> = sentences(&section.text)
            .into_iter()
            .flat_map(|sentence| split_long(sentence, tokens, max_tokens))
            .collect();
        let mut current: Vec<&(String, usize)> = Vec::new();
        let mut used = 0;
        let mut fresh = 0;
        for piece in &pieces {
            if used + piece.1 > max_tokens && fresh > 0 {
                out.push(Chunk {
                    heading: heading.clone(),
                    text: join(&current),
                });
                // Keep the last sentences, up to the overlap, to start the next chunk.
                let mut kept = Vec::new();
                let mut kept_tokens = 0;
                for previous in current.iter().rev() {
                    if kept_tokens + previous.1 > overlap_tokens || kept_tokens + previous.1 + piece.1 > max_tokens {
                        break;
                    }
                    kept_tokens += previous.1;
                    kept.push(*previous);
                }
                kept.reverse();
                current = kept;
                used = kept_tokens;
                fresh = 0;
            }
            current.push(piece);
            used += piece.1;
            fresh += 1;
        }
        if fresh > 0 {
            out.push(Chunk {
                heading: heading.clone(),
                text: join(&current),
            });
        }
    }
    out
}

fn join(pieces: &[&(String, usize)]) -> String {
    pieces
        .iter()
        .map(|(text, _)| text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first words of `text` that take at most `limit` tokens.
fn fit(text: &str, tokens: &dyn Fn(&str) -> usize, limit: usize) -> String {
    if tokens(text) <= limit {
        return text.to_string();
    }
    let mut kept = String::new();
    let mut used = 0;
    for word in text.split_whitespace() {
        let cost = tokens(word);
        if used + cost > limit {
            break;
        }
        if !kept.is_empty() {
            kept.push(' ');
        }
        kept.push_str(word);
        used += cost;
    }
    kept
}

/// A sentence as pieces of at most `max_tokens` tokens, cut between words (a word too long cut by
/// characters). Words are counted one at a time: a text's tokens are the sum of its words' (the tokenizer
/// splits on whitespace first), so a long sentence costs one pass.
fn split_long(sentence: String, tokens: &dyn Fn(&str) -> usize, max_tokens: usize) -> Vec<(String, usize)> {
    let count = tokens(&sentence);
    if count <= max_tokens {
        return vec![(sentence, count)];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut used = 0;
    for word in sentence.split(' ').filter(|word| !word.is_empty()) {
        let cost = tokens(word);
        if cost > max_tokens {
            if !current.is_empty() {
                pieces.push((std::mem::take(&mut current), used));
            }
            // One word longer than a chunk: cut it by characters.
            let mut part = String::new();
            let mut part_cost = 0;
            for c in word.chars() {
                part.push(c);
                let grown = tokens(&part);
                if grown > max_tokens {
                    part.pop();
                    pieces.push((std::mem::take(&mut part), part_cost));
                    part.push(c);
                    part_cost = tokens(&part);
                } else {
                    part_cost = grown;
                }
            }
            current = part;
            used = part_cost;
            continue;
        }
        if used + cost > max_tokens && !current.is_empty() {
            pieces.push((std::mem::take(&mut current), used));
            used = 0;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        used += cost;
    }
    if !current.is_empty() {
        pieces.push((current, used));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    #[test]
    fn markdown_headings_make_sections_and_code_stays_text() {
        let text =
            "Intro line.\n\n# Install\n\nRun it.\n\n## Linux\n\n```sh\n# not a heading\n```\n\n# Use\nCall it.\n";
        let sections = markdown_sections(text);
        let headings: Vec<Vec<String>> = sections.iter().map(|section| section.headings.clone()).collect();
        assert_eq!(
            headings,
            vec![
                vec![],
                vec!["Install".to_string()],
                vec!["Install".into(), "Linux".into()],
                vec!["Use".into()]
            ]
        );
        assert!(sections[2].text.contains("# not a heading"));
    }

    #[test]
    fn html_is_read_as_text_under_its_headings() {
        let html = "<html><head><style>p{}</style><script>var x = '<h1>no</h1>';</script></head><body>\
                    <h1>Guide &amp; notes</h1><p>First&nbsp;para.</p><!-- hidden --><h2>Part <b>two</b></h2>\
                    <p>Second &lt;para&gt; &#233;t&#xE9;.</p></body></html>";
        let sections = html_sections(html);
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].headings, vec!["Guide & notes"]);
        assert_eq!(sentences(&sections[0].text), vec!["First para."]);
        assert_eq!(sections[1].headings, vec!["Guide & notes", "Part two"]);
        assert_eq!(sentences(&sections[1].text), vec!["Second <para> été."]);
    }

    #[test]
    fn sentences_end_at_punctuation_and_paragraphs() {
        assert_eq!(
            sentences("One two. Three?\nstill three!\n\nNew para 3.14 is pi.机器。学习"),
            vec![
                "One two.",
                "Three?",
                "still three!",
                "New para 3.14 is pi.机器。",
                "学习"
            ]
        );
    }

    #[test]
    fn chunks_overlap_by_whole_sentences_within_the_budget() {
        let section = Section {
            headings: vec!["A".into(), "B".into()],
            text: "s1 a b. s2 c d. s3 e f. s4 g h. s5 i j.".into(),
        };
        let made = chunks(&[section], &words, 10, 3);
        assert_eq!(
            made.iter().map(|chunk| chunk.text.as_str()).collect::<Vec<_>>(),
            vec![
                "s1 a b. s2 c d.",
                "s2 c d. s3 e f.",
                "s3 e f. s4 g h.",
                "s4 g h. s5 i j."
            ]
        );
        assert!(made.iter().all(|chunk| chunk.heading == "A › B"));
    }

    #[test]
    fn headings_take_at_most_half_the_budget_and_unclosed_ones_end_at_a_block() {
        let long_heading = format!("# {}\n\nBody one. Body two.", "word ".repeat(40));
        let made = chunks(&markdown_sections(&long_heading), &words, 10, 0);
        assert!(!made.is_empty());
        for chunk in &made {
            assert!(words(&chunk.heading) <= 5, "{chunk:?}");
            assert!(words(&chunk.heading) + words(&chunk.text) <= 10, "{chunk:?}");
        }
        let html = "<h1>Guide</h1><p>Intro.</p><h2>Install<p>Run the installer. Then reboot.</p><p>More.</p>";
        let sections = html_sections(html);
        assert_eq!(sections.last().unwrap().headings, vec!["Guide", "Install"]);
        assert_eq!(
            sentences(&sections.last().unwrap().text),
            vec!["Run the installer.", "Then reboot.", "More."]
        );
        let scripts = format!(
            "<p>a.</p>{}<P>b &#0; c.</P><SCRIPT>x</SCRIPT>",
            "<script>x</Script>".repeat(1000)
        );
        assert_eq!(sentences(&html_sections(&scripts)[0].text), vec!["a.", "b \u{fffd} c."]);
    }

    #[test]
    fn a_sentence_far_longer_than_a_chunk_is_cut_between_words() {
        let sentence = "w ".repeat(10_000);
        let made = chunks(
            &[Section {
                headings: vec![],
                text: sentence,
            }],
            &words,
            7,
            0,
        );
        assert_eq!(made.len(), 10_000usize.div_ceil(7));
        assert!(made.iter().all(|chunk| words(&chunk.text) <= 7));
    }

    proptest! {
        #[test]
        fn every_word_lands_in_a_chunk_within_the_budget(
            text in "[a-z .!?\n#]{0,400}", max in 1usize..30, overlap in 0usize..10,
        ) {
            let made = chunks(&markdown_sections(&text), &words, max, overlap);
            for chunk in &made {
                prop_assert!(words(&chunk.heading) + words(&chunk.text) <= max, "{:?}", chunk);
                prop_assert!(!chunk.text.trim().is_empty());
            }
            let all: String = made.iter().map(|chunk| chunk.text.clone()).collect::<Vec<_>>().join(" ");
            for section in markdown_sections(&text) {
                for word in section.text.split_whitespace() {
                    prop_assert!(all.contains(word), "{word} lost");
                }
            }
        }

        #[test]
        fn any_html_is_read_without_a_panic(html in "[<>/a-zé0-9&#;! -]{0,300}") {
            for section in html_sections(&html) {
                let _ = sentences(&section.text);
            }
        }
    }
}
