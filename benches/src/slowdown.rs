//! The planted slowdown for testing the regression gate: `PODGRANT_BENCH_SLOWDOWN=N`.
//!
//! Benches that honour it repeat their measured work `1 + N` times per iteration, so the
//! slowdown is real work in the real code path (nothing sleeps, core is untouched). Unset or
//! `0` means no slowdown; anything that is not a small number is refused loudly.

/// The environment variable.
pub const ENV: &str = "PODGRANT_BENCH_SLOWDOWN";

/// The largest factor accepted.
pub const MAX: u32 = 100;

/// Parses the variable's value (pure). `None` and `""` mean 0.
pub fn parse(value: Option<&str>) -> Result<u32, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n <= MAX => Ok(n),
            _ => Err(format!("{ENV}={v:?}: want a whole number from 0 to {MAX}")),
        },
    }
}

/// Extra repetitions of the measured work, read from the environment once per call.
/// A bad value is a mistake in the bench invocation: it panics with the reason.
pub fn extra_runs() -> u32 {
    let value = std::env::var(ENV).ok();
    match parse(value.as_deref()) {
        Ok(n) => {
            if n > 0 {
                eprintln!(
                    "podgrant-benches: {ENV}={n}: measured work repeated {} times",
                    n + 1
                );
            }
            n
        }
        Err(reason) => panic!("{reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unset_zero_and_numbers() {
        assert_eq!(parse(None), Ok(0));
        assert_eq!(parse(Some("")), Ok(0));
        assert_eq!(parse(Some("0")), Ok(0));
        assert_eq!(parse(Some(" 3 ")), Ok(3));
        assert_eq!(parse(Some("100")), Ok(100));
    }

    #[test]
    fn refuses_garbage_and_huge_values() {
        assert!(parse(Some("yes")).unwrap_err().contains(ENV));
        assert!(parse(Some("-1")).is_err());
        assert!(parse(Some("101")).is_err());
    }
}
