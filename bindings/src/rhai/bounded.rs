//! Rhai's string functions that can build a value many times past the size
//! limits in one call, redefined to measure the result before building it.
//!
//! Rhai checks a value against `max_string_size` and `max_array_size` after
//! the call that made it. For most functions the result is at most a few
//! times an argument, so that is enough. Not for these:
//!
//! - `replace` makes a string as long as the number of matches times the
//!   substitute: a few hundred commas replaced by the largest string allowed
//!   asks for gigabytes, and an allocation that fails aborts the process;
//! - `split`, `split_rev` and `to_chars` turn each character of the largest
//!   string allowed into an array item of about 64 bytes;
//! - `pad` builds the largest string allowed in one call, which no time
//!   limit can stop, and loops forever when the padding is empty.
//!
//! Registered on the engine, they take the place of the standard library's
//! (the engine's own functions are looked up first) and behave the same,
//! except that a result past a limit is refused with Rhai's own size error
//! before it is built (a memory limit error, like any other).

use rhai::{Array, Engine, EvalAltResult, INT, ImmutableString, NativeCallContext};

/// A binding's result: a value or a thrown error.
type Result<T> = std::result::Result<T, Box<EvalAltResult>>;

/// Characters `pad` adds between two looks at `time_up`.
const PAD_CHUNK: usize = 1 << 16;

/// Registers the measured versions. `time_up` says whether the hook call's
/// deadline has passed (cheap: it is looked at while `pad` builds).
pub(crate) fn register(engine: &mut Engine, time_up: impl Fn() -> bool + Clone + 'static) {
    type S = ImmutableString;
    type C<'a> = NativeCallContext<'a>;
    let up = time_up.clone();
    engine
        .register_fn(
            "pad",
            move |c: C, s: &mut S, len: INT, with: char| -> Result<()> {
                pad(&c, s, len, with.encode_utf8(&mut [0; 4]), &up)
            },
        )
        .register_fn(
            "pad",
            move |c: C, s: &mut S, len: INT, with: S| -> Result<()> {
                pad(&c, s, len, &with, &time_up)
            },
        )
        .register_fn("replace", |c: C, s: &mut S, f: S, r: S| -> Result<()> {
            replace(&c, s, &f, &r)
        })
        .register_fn("replace", |c: C, s: &mut S, f: S, r: char| -> Result<()> {
            replace(&c, s, &f, r.encode_utf8(&mut [0; 4]))
        })
        .register_fn("replace", |c: C, s: &mut S, f: char, r: S| -> Result<()> {
            replace(&c, s, f.encode_utf8(&mut [0; 4]), &r)
        })
        .register_fn(
            "replace",
            |c: C, s: &mut S, f: char, r: char| -> Result<()> {
                let (mut a, mut b) = ([0; 4], [0; 4]);
                replace(&c, s, f.encode_utf8(&mut a), r.encode_utf8(&mut b))
            },
        )
        .register_fn("to_chars", |c: C, s: S| -> Result<Array> {
            items(&c, s.chars().count())?;
            Ok(s.chars().map(Into::into).collect())
        })
        .register_fn("split", |c: C, s: S| -> Result<Array> {
            if s.is_empty() {
                return Ok(vec![s.into()]);
            }
            items(&c, s.split_whitespace().count())?;
            Ok(s.split_whitespace().map(Into::into).collect())
        })
        .register_fn("split", |c: C, s: S, d: S| -> Result<Array> {
            split(&c, &s, &d, INT::MAX, false)
        })
        .register_fn("split", |c: C, s: S, d: S, n: INT| -> Result<Array> {
            split(&c, &s, &d, n, false)
        })
        .register_fn("split", |c: C, s: S, d: char| -> Result<Array> {
            split(&c, &s, d.encode_utf8(&mut [0; 4]), INT::MAX, false)
        })
        .register_fn("split", |c: C, s: S, d: char, n: INT| -> Result<Array> {
            split(&c, &s, d.encode_utf8(&mut [0; 4]), n, false)
        })
        .register_fn("split_rev", |c: C, s: S, d: S| -> Result<Array> {
            split(&c, &s, &d, INT::MAX, true)
        })
        .register_fn("split_rev", |c: C, s: S, d: S, n: INT| -> Result<Array> {
            split(&c, &s, &d, n, true)
        })
        .register_fn("split_rev", |c: C, s: S, d: char| -> Result<Array> {
            split(&c, &s, d.encode_utf8(&mut [0; 4]), INT::MAX, true)
        })
        .register_fn(
            "split_rev",
            |c: C, s: S, d: char, n: INT| -> Result<Array> {
                split(&c, &s, d.encode_utf8(&mut [0; 4]), n, true)
            },
        );
}

/// Refuses a string of `len` bytes past `max_string_size`.
fn string(c: &NativeCallContext, len: usize) -> Result<()> {
    let max = c.engine().max_string_size();
    if max > 0 && len > max {
        return Err(
            EvalAltResult::ErrorDataTooLarge("Length of string".into(), c.call_position()).into(),
        );
    }
    Ok(())
}

/// Refuses an array of `n` items past `max_array_size`.
fn items(c: &NativeCallContext, n: usize) -> Result<()> {
    let max = c.engine().max_array_size();
    if max > 0 && n > max {
        return Err(EvalAltResult::ErrorDataTooLarge(
            "Size of array/BLOB".into(),
            c.call_position(),
        )
        .into());
    }
    Ok(())
}

/// `s.pad(len, with)`: `with` repeated (the last time cut short) until `s`
/// is `len` characters long. Rhai's own loops forever when `with` is empty,
/// and cannot be stopped by the time limit while it builds a long string;
/// this one refuses an empty `with` and gives up when the time is up.
fn pad(
    c: &NativeCallContext,
    s: &mut ImmutableString,
    len: INT,
    with: &str,
    time_up: &dyn Fn() -> bool,
) -> Result<()> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(());
    };
    string(c, len)?;
    let have = s.chars().count();
    if len <= have {
        return Ok(());
    }
    if with.is_empty() {
        return Err(EvalAltResult::ErrorRuntime(
            "pad: the padding is empty".into(),
            c.call_position(),
        )
        .into());
    }
    let mut missing = len - have;
    let p = s.make_mut();
    let mut since_look = 0;
    while missing > 0 {
        for ch in with.chars().take(missing) {
            p.push(ch);
            missing -= 1;
        }
        since_look += with.len();
        if since_look >= PAD_CHUNK {
            since_look = 0;
            if time_up() {
                return Err(super::error::time_up());
            }
        }
    }
    string(c, s.len())
}

/// `s.replace(find, sub)`: every `find` in `s` becomes `sub`.
fn replace(c: &NativeCallContext, s: &mut ImmutableString, find: &str, sub: &str) -> Result<()> {
    if s.is_empty() {
        return Ok(());
    }
    if sub.len() > find.len() {
        // An empty `find` matches before every character and at the end.
        let matches = match find.is_empty() {
            true => s.chars().count() + 1,
            false => s.matches(find).count(),
        };
        string(
            c,
            s.len()
                .saturating_add(matches.saturating_mul(sub.len() - find.len())),
        )?;
    }
    *s = s.replace(find, sub).into();
    Ok(())
}

/// `s.split(d)` and `s.split(d, n)`, or from the end (`split_rev`): at most
/// `n` pieces; fewer than two asked for, or no `d` in `s`, give `[s]`.
fn split(c: &NativeCallContext, s: &ImmutableString, d: &str, n: INT, rev: bool) -> Result<Array> {
    if n <= 1 || s.is_empty() || (!d.is_empty() && !s.contains(d)) {
        return Ok(vec![s.clone().into()]);
    }
    // An empty `d` splits around every character, with an empty piece at
    // each end.
    let pieces = match d.is_empty() {
        true => s.chars().count() + 2,
        false => s.matches(d).count() + 1,
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    items(c, pieces.min(n))?;
    Ok(match rev {
        false => s.splitn(n, d).map(Into::into).collect(),
        true => s.rsplitn(n, d).map(Into::into).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    use rhai::{Dynamic, Engine, EvalAltResult};

    /// Counts the bytes each thread has allocated and not freed, and the
    /// most at any moment, so a test can tell a value refused before it was
    /// built from one built and then refused.
    struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn add(bytes: isize) {
        let _ = LIVE.try_with(|live| {
            live.set(live.get() + bytes);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
        });
    }

    // SAFETY: every call is passed on to `System` unchanged; the counting
    // touches only this thread's `Cell`s, which need no allocation.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as isize);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as isize));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as isize - layout.size() as isize);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// The most this thread had allocated at once while `f` ran, in bytes.
    fn peak_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        (out, PEAK.with(Cell::get) - base)
    }

    fn bounded(max_string: usize, max_array: usize) -> Engine {
        let mut engine = Engine::new();
        engine
            .set_max_string_size(max_string)
            .set_max_array_size(max_array);
        super::register(&mut engine, || false);
        engine
    }

    #[test]
    fn the_same_results_as_the_standard_library() {
        let plain = Engine::new();
        let ours = bounded(1 << 20, 1 << 16);
        for script in [
            r#""a,b,,c".split(",")"#,
            r#""a,b,,c".split(",", 2)"#,
            r#""a,b,,c".split(",", 1)"#,
            r#""a,b,,c".split(",", -3)"#,
            r#""a,b,,c".split(',')"#,
            r#""a,b,,c".split(',', 3)"#,
            r#""a,b,,c".split_rev(",")"#,
            r#""a,b,,c".split_rev(",", 2)"#,
            r#""a,b,,c".split_rev(',')"#,
            r#""a,b,,c".split_rev(',', 2)"#,
            r#""abc".split("")"#,
            r#""abc".split_rev("")"#,
            r#""abc".split(";")"#,
            r#""".split(",")"#,
            r#""  a  b c ".split()"#,
            r#""".split()"#,
            r#""héllo".to_chars()"#,
            r#""".to_chars()"#,
            r#"let s = "a-b-a"; s.replace("a", "xyz"); s"#,
            r#"let s = "a-b-a"; s.replace("a", 'q'); s"#,
            r#"let s = "a-b-a"; s.replace('a', "xyz"); s"#,
            r#"let s = "a-b-a"; s.replace('a', 'é'); s"#,
            r#"let s = "ab"; s.replace("", "-"); s"#,
            r#"let s = "abcabc"; s.replace("abc", ""); s"#,
            r#"let s = ""; s.replace("a", "b"); s"#,
            r#"let s = "ab"; s.pad(5, '-'); s"#,
            r#"let s = "ab"; s.pad(7, "xy"); s"#,
            r#"let s = "ab"; s.pad(6, "é"); s"#,
            r#"let s = "abc"; s.pad(2, 'x'); s"#,
            r#"let s = "abc"; s.pad(-3, 'x'); s"#,
        ] {
            let want: Dynamic = plain.eval(script).unwrap();
            let got: Dynamic = ours.eval(script).unwrap();
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{script}");
        }
    }

    #[test]
    fn a_result_past_a_limit_is_refused_before_it_is_built() {
        let engine = bounded(10_000, 100);
        let too_large = |r: Result<Dynamic, Box<EvalAltResult>>| match r {
            Err(e) => matches!(*e, EvalAltResult::ErrorDataTooLarge(..)),
            Ok(v) => panic!("built {v:?}"),
        };
        // 10,000 commas, each to become 1,000 characters (10 MB), and then
        // 10,001 pieces of an array: refused while the string itself, 10 kB,
        // is the largest thing alive.
        let (refused, peak) = peak_of(|| {
            engine.eval::<Dynamic>(
                r#"let s = ""; s.pad(10000, ','); let t = ""; t.pad(1000, 'x'); s.replace(",", t); s"#,
            )
        });
        assert!(too_large(refused));
        assert!(peak < 200_000, "{peak} bytes allocated at once");
        for split in [r#"s.split(",")"#, r#"s.split_rev(',')"#, "s.to_chars()"] {
            let script = format!(r#"let s = ""; s.pad(10000, ','); {split}"#);
            let (refused, peak) = peak_of(|| engine.eval::<Dynamic>(&script));
            assert!(too_large(refused), "{split}");
            assert!(peak < 200_000, "{split}: {peak} bytes allocated at once");
        }
        // What fits is built.
        let fine: rhai::Array = engine.eval(r#""a,b,c".split(",")"#).unwrap();
        assert_eq!(fine.len(), 3);
    }

    #[test]
    fn padding_with_nothing_is_an_error_and_a_long_pad_stops_when_time_is_up() {
        let engine = bounded(1 << 20, 100);
        let r = engine.eval::<Dynamic>(r#"let s = "x"; s.pad(5, ""); s"#);
        assert!(matches!(*r.unwrap_err(), EvalAltResult::ErrorRuntime(..)));
        // Already long enough: nothing to add, with or without padding.
        let s: String = engine.eval(r#"let s = "xyz"; s.pad(2, ""); s"#).unwrap();
        assert_eq!(s, "xyz");
        let mut late = Engine::new();
        super::register(&mut late, || true);
        let r = late.eval::<Dynamic>(r#"let s = ""; s.pad(1000000, 'a'); s"#);
        let e = r.unwrap_err();
        assert!(e.to_string().contains(crate::rhai::error::TIME_UP), "{e}");
    }
}
