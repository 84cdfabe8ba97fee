//! KUnit's `filter_glob`: `*` matches any run of characters, `?` one.
//! Matched against `suite.case`; a pattern without a dot also selects
//! whole suites by name (`test=boot` = `test=boot.*`); commas separate
//! alternatives, and a leading `-` excludes.

pub fn glob_match(pat: &str, text: &str) -> bool {
    let (p, t) = (pat.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Does `filter` select case `case` of suite `suite`?  A comma separates
/// alternatives: `test=frames.*,paging.*`.  An alternative with a leading
/// `-` excludes what it matches, whatever else matches it; exclusions alone
/// start from every case (`test=-race.explorer_thread_context`: all but
/// the one exhaustive explorer run, which the runner's extra memory sizes
/// leave out).  KUnit's filter_glob has no exclusion; this is our addition.
pub fn selects(filter: &str, suite: &str, case: &str) -> bool {
    let (mut included, mut any_inclusion) = (false, false);
    for f in filter.split(',') {
        match f.strip_prefix('-') {
            Some(excl) if selects_one(excl, suite, case) => return false,
            Some(_) => {}
            None => {
                any_inclusion = true;
                included |= selects_one(f, suite, case);
            }
        }
    }
    included || !any_inclusion
}

fn selects_one(filter: &str, suite: &str, case: &str) -> bool {
    if !filter.contains('.') {
        return glob_match(filter, suite);
    }
    let mut full = vmfault::fixed_buf::FixedBuf::<128>::new();
    let _ = core::fmt::Write::write_fmt(&mut full, format_args!("{}.{}", suite, case));
    glob_match(filter, full.as_str())
}
