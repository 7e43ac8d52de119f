//! A hand-drawn SVG line chart of CPU share over time (for `soak`); pure string building.

use std::fmt::Write;

/// One series point: seconds since start, value.
pub type Point = (f64, f64);

/// Renders `points` as an SVG line chart with axes, a title and an optional budget line.
/// The y axis spans at least 0..1 (one core) and grows to fit the data.
pub fn line_chart_svg(title: &str, y_label: &str, points: &[Point], budget: Option<f64>) -> String {
    const W: f64 = 800.0;
    const H: f64 = 360.0;
    const L: f64 = 60.0; // left margin
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 50.0;
    let x_max = points.iter().map(|p| p.0).fold(1.0_f64, f64::max);
    let y_max = points
        .iter()
        .map(|p| p.1)
        .chain(budget)
        .fold(1.0_f64, f64::max)
        * 1.05;
    let sx = |x: f64| L + (x / x_max) * (W - L - R);
    let sy = |y: f64| H - B - (y / y_max) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Axes.
    let _ = write!(
        s,
        r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
        H - B,
        W - R,
        H - B,
        H - B
    );
    for i in 0..=5 {
        let y = y_max * f64::from(i) / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{py}" x2="{}" y2="{py}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{y:.2}</text>"##,
            W - R,
            L - 6.0,
            sy(y) + 4.0,
            py = sy(y)
        );
        let x = x_max * f64::from(i) / 5.0;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{x:.0}s</text>"#,
            sx(x),
            H - B + 18.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    if let Some(b) = budget {
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{y}" x2="{}" y2="{y}" stroke="#c00" stroke-dasharray="6 4"/><text x="{}" y="{}" fill="#c00" text-anchor="end">budget {b}</text>"##,
            W - R,
            W - R,
            sy(b) - 4.0,
            y = sy(b)
        );
    }
    if !points.is_empty() {
        let path: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            path.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_point_per_sample_and_escapes_the_title() {
        let svg = line_chart_svg(
            "cpu <engine>",
            "share",
            &[(0.0, 0.0), (1.0, 0.5), (2.0, 0.1)],
            Some(0.05),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("cpu &lt;engine&gt;"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), 3);
        assert!(svg.contains("budget 0.05"));
        // Empty series still renders axes.
        assert!(line_chart_svg("t", "y", &[], None).contains("</svg>"));
    }
}
