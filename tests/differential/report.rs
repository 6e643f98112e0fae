//! The diff report: differences between the direct and the proxied run, grouped by class, with the
//! seed and the command that reruns one combination.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::known::{self, KNOWN};
use super::{Outcome, Step};

/// How many of a session's previous statements a first difference shows.
const CONTEXT: usize = 10;

/// One statement whose answers differ.
#[derive(Debug, Clone)]
pub struct Diff {
    pub combo: String,
    pub seed: u64,
    pub session: usize,
    /// Index of the statement in its session's script.
    pub step: usize,
    /// Position in the global order.
    pub position: usize,
    pub sql: String,
    pub class: &'static str,
    pub state: String,
    pub direct: Outcome,
    pub proxied: Outcome,
    /// No earlier difference in this session (later ones may be consequences).
    pub first_in_session: bool,
    /// The known entry (`known.rs`) that absorbs it: it matched this difference, or the session's
    /// first difference. `None`: a new difference, the test fails.
    pub known: Option<&'static str>,
    /// `known` entry's id, `NEW`, or `NEW, after ...` (for grouping).
    pub hint: String,
    /// For a session's first difference: its previous statements (oldest first).
    pub context: Vec<String>,
}

/// Everything compared by one test binary.
#[derive(Debug, Default)]
pub struct Report {
    pub protocol: &'static str,
    pub test: &'static str,
    pub compared: usize,
    pub combos: Vec<String>,
    pub diffs: Vec<Diff>,
}

impl Report {
    /// Compare the two runs of `combo` (schedule `order`, scripts `scripts`) and record
    /// differences, each matched against the known list.
    #[allow(clippy::too_many_arguments)]
    pub fn compare(
        &mut self,
        combo: &str,
        seed: u64,
        scripts: &[Vec<Step>],
        order: &[usize],
        direct: &[Outcome],
        proxied: &[Outcome],
    ) {
        self.combos.push(combo.to_string());
        let mut next = vec![0usize; scripts.len()];
        // Each session's first difference: its known entry (later ones may be its consequences).
        let mut seen: Vec<Option<Option<&'static str>>> = vec![None; scripts.len()];
        let n = order.len().min(direct.len()).min(proxied.len());
        for (position, &s) in order.iter().enumerate().take(n) {
            let step_index = next[s];
            next[s] += 1;
            let step = &scripts[s][step_index];
            self.compared += 1;
            let (d, p) = (&direct[position], &proxied[position]);
            if d.same(p) {
                continue;
            }
            let (known, why) = match seen[s] {
                None => match known::find(combo, step, d, p) {
                    Some(k) => (Some(k.id), k.id.to_string()),
                    None => (None, "NEW".to_string()),
                },
                Some(Some(first)) => (
                    Some(first),
                    format!("{first} (consequence: after it in the session)"),
                ),
                Some(None) => (
                    None,
                    "NEW (after an earlier new difference in the session)".to_string(),
                ),
            };
            self.diffs.push(Diff {
                combo: combo.to_string(),
                seed,
                session: s,
                step: step_index,
                position,
                sql: step.sql.clone(),
                class: step.class,
                state: step.state.clone(),
                direct: d.clone(),
                proxied: p.clone(),
                first_in_session: seen[s].is_none(),
                known,
                hint: why,
                context: if seen[s].is_none() {
                    let from = step_index.saturating_sub(CONTEXT);
                    scripts[s][from..step_index]
                        .iter()
                        .map(|st| st.sql.clone())
                        .collect()
                } else {
                    Vec::new()
                },
            });
            if seen[s].is_none() {
                seen[s] = Some(known);
            }
        }
        if direct.len() != proxied.len() {
            let (short, len) = if direct.len() < proxied.len() {
                ("direct", direct.len())
            } else {
                ("proxied", proxied.len())
            };
            self.diffs.push(Diff {
                combo: combo.to_string(),
                seed,
                session: 0,
                step: 0,
                position: len,
                sql: String::new(),
                class: "run aborted",
                state: String::new(),
                direct: Outcome::err("-", format!("{} statements", direct.len())),
                proxied: Outcome::err("-", format!("{} statements", proxied.len())),
                first_in_session: true,
                context: Vec::new(),
                known: None,
                hint: format!(
                    "NEW: the {short} run stopped at position {len} (timeout or lost connection)"
                ),
            });
        }
    }

    /// Rerun command for one combination (the base seed and, in long mode, the statement count
    /// decide its scripts; `_seed`, the combination's own, is shown in the report).
    pub fn rerun(&self, combo: &str, _seed: u64) -> String {
        let env = super::Env::read();
        let long = env
            .statements
            .map(|n| format!("SWITCHYARD_DIFF_STATEMENTS={n} "))
            .unwrap_or_default();
        format!(
            "SWITCHYARD_DIFF_SEED={} {long}SWITCHYARD_DIFF_COMBO='{combo}' cargo test --test {} -- --nocapture",
            env.seed, self.test
        )
    }

    /// The printed report: counts, then one block per class of difference.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "=== differential {}: {} statements compared in {} combinations, {} differences, {} of them new ===",
            self.protocol,
            self.compared,
            self.combos.len(),
            self.diffs.len(),
            self.new_diffs()
        );
        type Key<'a> = (&'a str, &'static str, &'static str);
        let mut classes: BTreeMap<Key<'_>, Vec<&Diff>> = BTreeMap::new();
        for d in &self.diffs {
            let key = (d.hint.as_str(), d.class, d.direct.diff_kind(&d.proxied));
            classes.entry(key).or_default().push(d);
        }
        for ((hint, class, kind), diffs) in &classes {
            let first = diffs.iter().filter(|d| d.first_in_session).count();
            let mut combos: Vec<&str> = diffs.iter().map(|d| d.combo.as_str()).collect();
            combos.dedup();
            combos.sort_unstable();
            combos.dedup();
            let _ = writeln!(
                out,
                "\n--- [{hint}] statement class `{class}`, {kind} differ: {} times ({first} first in their session) in {} combinations: {}",
                diffs.len(),
                combos.len(),
                combos.iter().take(6).copied().collect::<Vec<_>>().join(" | ")
            );
            let ex = diffs
                .iter()
                .find(|d| d.first_in_session)
                .unwrap_or(&diffs[0]);
            let _ = writeln!(
                out,
                "    example: combination {} seed {} session {} statement {} (position {}), state [{}]\n    sql:     {}\n    direct:  {}\n    proxied: {}\n    rerun:   {}",
                ex.combo,
                ex.seed,
                ex.session,
                ex.step,
                ex.position,
                ex.state,
                ex.sql,
                ex.direct,
                ex.proxied,
                self.rerun(&ex.combo, ex.seed)
            );
            if !ex.context.is_empty() {
                let _ = writeln!(
                    out,
                    "    the session's previous statements: {}",
                    ex.context.join(" ; ")
                );
            }
        }
        out.push_str(&self.known_summary());
        out
    }

    /// Differences no known entry absorbs: the test fails on any.
    pub fn new_diffs(&self) -> usize {
        self.diffs.iter().filter(|d| d.known.is_none()).count()
    }

    /// How many differences each known entry of this protocol absorbed; entries that absorbed
    /// nothing are called stale.
    pub fn known_summary(&self) -> String {
        let mut out = String::from("\n=== known differences (tests/differential/known.rs) ===\n");
        let protocol = self
            .combos
            .first()
            .and_then(|c| c.split('/').next())
            .unwrap_or("");
        for k in KNOWN.iter().filter(|k| k.protocol == protocol) {
            let mine: Vec<&Diff> = self
                .diffs
                .iter()
                .filter(|d| d.known == Some(k.id))
                .collect();
            let first = mine.iter().filter(|d| d.first_in_session).count();
            if mine.is_empty() {
                let _ = writeln!(
                    out,
                    "  STALE {}: matched nothing in this run (fixed? delete the entry) [{}]",
                    k.id, k.issue
                );
            } else {
                let _ = writeln!(
                    out,
                    "  {}: absorbed {} ({first} first in their session, {} consequences) [{}]",
                    k.id,
                    mine.len(),
                    mine.len() - first,
                    k.issue
                );
            }
        }
        out
    }
}
