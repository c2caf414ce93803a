//! Helpers shared by the renderers: shape checks, chunk numbering, overlapped pairs, colours,
//! escaping.

use pipeblocks_core::{Pass, PassKind, Schedule, SimResult};

use crate::VizError;

/// Checks that `r` has one start/end per pass of `s` and one memory curve per device.
pub(crate) fn check(s: &Schedule, r: &SimResult) -> Result<(), VizError> {
    let mismatch = |detail: String| VizError::Mismatch {
        schedule: s.name.clone(),
        detail,
    };
    let p = s.devices as usize;
    if s.lists.len() != p {
        return Err(mismatch(format!(
            "the schedule declares {p} devices but has {} lists",
            s.lists.len()
        )));
    }
    if r.start.len() != p || r.end.len() != p || r.memory.len() != p {
        return Err(mismatch(format!(
            "{p} devices in the schedule, {} in the result",
            r.start.len()
        )));
    }
    for (d, list) in s.lists.iter().enumerate() {
        if r.start[d].len() != list.len() || r.end[d].len() != list.len() {
            return Err(mismatch(format!(
                "device {d} has {} passes but {} simulated times",
                list.len(),
                r.start[d].len()
            )));
        }
    }
    if s.lists.iter().flatten().any(|ps| ps.stage >= s.stages) {
        return Err(mismatch("a pass names a stage out of range".into()));
    }
    Ok(())
}

/// For every stage: its position among its device's stages (its chunk, 0-based), and for
/// every device the number of chunks it holds.
pub(crate) fn chunks(s: &Schedule) -> (Vec<u32>, Vec<u32>) {
    let mut chunk_of = vec![0u32; s.stages as usize];
    let mut per_device = vec![0u32; s.devices as usize];
    for st in 0..s.stages {
        let d = s.device_of(st) as usize;
        if d < per_device.len() {
            chunk_of[st as usize] = per_device[d];
            per_device[d] += 1;
        }
    }
    (chunk_of, per_device)
}

/// For every device and every position of its list, whether an overlapped pair
/// ([`Schedule::pairs`]) starts there: the pass and the next one are drawn as one unit. All
/// `false` for a schedule without pairs. A position right after a pair start never starts
/// another pair (the pair consumes it), and a start on the last position is dropped, so a
/// renderer may always take `i` and `i + 1` together.
pub(crate) fn pair_starts(s: &Schedule) -> Vec<Vec<bool>> {
    let mut out: Vec<Vec<bool>> = s.lists.iter().map(|l| vec![false; l.len()]).collect();
    let Some(raw) = s.pair_starts() else {
        return out;
    };
    for (v, r) in out.iter_mut().zip(&raw) {
        let mut i = 0;
        while i + 1 < v.len() {
            if r.get(i).copied().unwrap_or(false) {
                v[i] = true;
                i += 2;
            } else {
                i += 1;
            }
        }
    }
    out
}

/// For every device, whether its list holds host-link transfers (O or L passes).
pub(crate) fn link_devices(s: &Schedule) -> Vec<bool> {
    s.lists
        .iter()
        .map(|l| l.iter().any(|q| q.kind.is_transfer()))
        .collect()
}

/// Whether the schedule saves memory with passes a plain schedule does not have: offload and
/// load-back transfers (O, L) or recomputation (R).
pub(crate) fn has_memory_passes(s: &Schedule) -> bool {
    s.lists
        .iter()
        .flatten()
        .any(|q| q.kind.is_transfer() || q.kind == PassKind::R)
}

/// The name of an overlapped pair: both passes joined by `+` (`F0.7+BW7.3`).
pub(crate) fn pair_name(first: Pass, second: Pass) -> String {
    format!("{first}+{second}")
}

/// Base colour of a pass kind, as RGB.
pub(crate) fn kind_rgb(kind: PassKind) -> (u8, u8, u8) {
    match kind {
        PassKind::F => (0x2f, 0x6d, 0xb5),
        PassKind::B => (0xe0, 0x7b, 0x16),
        PassKind::W => (0x2e, 0x93, 0x55),
        PassKind::BW => (0x8a, 0x4f, 0xb3),
        PassKind::R => (0x6b, 0x7b, 0x8c),
        PassKind::O => (0xc0, 0x39, 0x2b),
        PassKind::L => (0x16, 0xa0, 0x85),
    }
}

/// The colour of a pass of `kind` in chunk `chunk` of `chunks`: later chunks are lighter.
/// Returns the fill and a text colour that stays readable on it.
pub(crate) fn pass_colours(kind: PassKind, chunk: u32, chunks: u32) -> (String, &'static str) {
    let (r, g, b) = kind_rgb(kind);
    let t = if chunks > 1 {
        0.55 * chunk as f64 / (chunks - 1) as f64
    } else {
        0.0
    };
    let mix = |c: u8| (c as f64 + (255.0 - c as f64) * t).round() as u8;
    let (r, g, b) = (mix(r), mix(g), mix(b));
    let lum = 0.2126 * r as f64 + 0.7152 * g as f64 + 0.0722 * b as f64;
    let text = if lum > 150.0 { "#111111" } else { "#ffffff" };
    (format!("#{r:02x}{g:02x}{b:02x}"), text)
}

/// Escapes text for XML/HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A number with at most three decimals and no trailing zeros (`2`, `2.5`, `0.333`).
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "0".into();
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// A readable tick step for an axis spanning `span`, about `target` ticks.
pub(crate) fn tick_step(span: f64, target: f64) -> f64 {
    if !(span > 0.0 && span.is_finite()) {
        return 1.0;
    }
    let raw = span / target.max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let k = if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

/// Refuses a picture of `s` beyond [`crate::MAX_PICTURE_PASSES`] passes.
pub(crate) fn check_picture(s: &Schedule) -> Result<(), VizError> {
    if s.num_passes() > crate::MAX_PICTURE_PASSES {
        return Err(VizError::TooLarge {
            what: "a timeline picture",
            schedule: s.name.clone(),
            passes: s.num_passes(),
            limit: crate::MAX_PICTURE_PASSES,
            hint: "draw fewer microbatches (the steady state repeats), or export a Chrome trace",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_numbers() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(1.0 / 3.0), "0.333");
        assert_eq!(num(-0.0001), "0");
        assert_eq!(tick_step(33.0, 10.0), 5.0);
        assert_eq!(tick_step(7.0, 10.0), 1.0);
        assert_eq!(tick_step(0.5, 10.0), 0.05);
    }

    #[test]
    fn pair_starts_take_adjacent_halves_only() {
        use pipeblocks_core::{Pass, Placement};
        let mut s = Schedule::empty("t", 1, 3, Placement::Sequential).unwrap();
        let (f, bw) = (
            |mb| Pass::new(PassKind::F, 0, mb),
            |mb| Pass::new(PassKind::BW, 0, mb),
        );
        assert_eq!(pair_starts(&s), vec![Vec::<bool>::new()]);
        s.push(f(0));
        s.push_pair(f(1), bw(0));
        s.push(bw(1));
        s.push(f(2));
        s.push(bw(2));
        // Not adjacent in the list: ignored (validation refuses it; drawing stays possible).
        s.pairs.push([f(0), bw(1)]);
        assert_eq!(
            pair_starts(&s),
            vec![vec![false, true, false, false, false, false]]
        );
        assert_eq!(pair_name(f(1), bw(0)), "F0.1+BW0.0");
        s.pairs.clear();
        assert_eq!(pair_starts(&s), vec![vec![false; 6]]);
    }

    #[test]
    fn later_chunks_are_lighter() {
        let (a, _) = pass_colours(PassKind::F, 0, 2);
        let (b, _) = pass_colours(PassKind::F, 1, 2);
        let sum = |h: &str| {
            (1..7)
                .step_by(2)
                .map(|i| u32::from_str_radix(&h[i..i + 2], 16).unwrap())
                .sum::<u32>()
        };
        assert!(sum(&b) > sum(&a), "{a} {b}");
    }
}
