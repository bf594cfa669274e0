//! Median and range of a handful of samples, and number formatting for tables.

/// The median, minimum and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub count: usize,
}

/// Summarizes the finite samples; `None` when there are none.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Summary {
        median,
        min: sorted[0],
        max: sorted[n - 1],
        count: n,
    })
}

/// A number for a table cell: thousands separators from 1,000 up, otherwise three
/// significant digits (`12.3`, `1.23`, `0.123`).
pub fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        with_separators(value.round() as i64)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else if magnitude == 0.0 {
        "0".to_string()
    } else {
        format!("{value:.3}")
    }
}

/// A compact number for ranges: `125k`, `1.25M`, otherwise like [`format_number`].
pub fn format_compact(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        let millions = format!("{:.2}", value / 1e6);
        format!("{}M", millions.trim_end_matches('0').trim_end_matches('.'))
    } else if magnitude >= 1e4 {
        let thousands = format_number(value / 1e3);
        match thousands.strip_suffix(".0") {
            Some(whole) => format!("{whole}k"),
            None => format!("{thousands}k"),
        }
    } else {
        format_number(value)
    }
}

/// `median [min–max]`, or just the median when there was one sample or no spread.
pub fn format_summary(summary: &Summary) -> String {
    let median = format_number(summary.median);
    if summary.count < 2 {
        return median;
    }
    format!(
        "{median} [{}–{}]",
        format_compact(summary.min),
        format_compact(summary.max)
    )
}

fn with_separators(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = summarize(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.count), (2.0, 1.0, 3.0, 3));
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert_eq!(summarize(&[f64::NAN]), None);
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(format_number(123456.4), "123,456");
        assert_eq!(format_number(1234.0), "1,234");
        assert_eq!(format_number(123.4), "123");
        assert_eq!(format_number(12.34), "12.3");
        assert_eq!(format_number(5.391), "5.39");
        assert_eq!(format_number(0.4531), "0.453");
        assert_eq!(format_compact(120_400.0), "120k");
        assert_eq!(format_compact(1_250_000.0), "1.25M");
        assert_eq!(format_compact(2_000_000.0), "2M");
        assert_eq!(format_compact(950.0), "950");
        assert_eq!(format_compact(80_000.0), "80k");
        assert_eq!(format_compact(12_345.0), "12.3k");
    }
}
