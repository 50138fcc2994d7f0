//! Streamed export of a filtered trail as JSON Lines or CSV: page by page
//! along the cursor, so memory stays flat whatever the size.

use sqlx::AnyPool;

use crate::{query, AuditError, AuditQuery, StoredEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "jsonl" | "ndjson" | "json-lines" => Some(Format::JsonLines),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::JsonLines => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }
}

const CSV_HEADER: &str =
    "seq,ts,tenant,tenant_path,actor_subject,actor_tenant,actor_client,action,target,\
outcome,reason,correlation_id,source,details,personal_digest,pruned_at,prev_hash,hash\n";

fn csv_field(out: &mut String, v: Option<&str>) {
    let v = v.unwrap_or("");
    // Cells starting like a formula are prefixed, so a spreadsheet never
    // evaluates what a user typed (CSV injection).
    let guarded = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&guarded.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&guarded);
    }
}

fn encode(format: Format, e: &StoredEvent, out: &mut String) -> Result<(), AuditError> {
    match format {
        Format::JsonLines => {
            out.push_str(&serde_json::to_string(e)?);
            out.push('\n');
        }
        Format::Csv => {
            let seq = e.seq.to_string();
            let fields = [
                Some(seq.as_str()),
                Some(e.ts.as_str()),
                e.tenant.as_deref(),
                e.tenant_path.as_deref(),
                e.path_kreis.as_deref(),
                e.path_samtgemeinde.as_deref(),
                e.path_gemeinde.as_deref(),
                e.actor_subject.as_deref(),
                e.actor_tenant.as_deref(),
                e.actor_client.as_deref(),
                Some(e.action.as_str()),
                e.target.as_deref(),
                Some(e.outcome.as_str()),
                e.reason.as_deref(),
                e.correlation_id.as_deref(),
                e.source.as_deref(),
                Some(e.details.as_str()),
                Some(e.personal_digest.as_str()),
                e.pruned_at.as_deref(),
                Some(e.prev_hash.as_str()),
                Some(e.hash.as_str()),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                csv_field(out, *f);
            }
            out.push('\n');
        }
    }
    Ok(())
}

/// Pages through the filter; yields encoded chunks (the CSV header first).
pub struct Exporter {
    pool: AnyPool,
    query: AuditQuery,
    format: Format,
    started: bool,
    done: bool,
}

impl Exporter {
    pub fn new(pool: AnyPool, mut query: AuditQuery, format: Format) -> Exporter {
        query.limit = 1000;
        Exporter {
            pool,
            query,
            format,
            started: false,
            done: false,
        }
    }

    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<String>, AuditError> {
        if self.done {
            return Ok(None);
        }
        let mut out = String::new();
        if !self.started {
            self.started = true;
            if self.format == Format::Csv {
                out.push_str(CSV_HEADER);
            }
        }
        let page = query(&self.pool, &self.query).await?;
        match page.last() {
            Some(last) => self.query.before_seq = Some(last.seq),
            None => self.done = true,
        }
        if (page.len() as i64) < self.query.limit {
            self.done = true;
        }
        for e in &page {
            encode(self.format, e, &mut out)?;
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut s = String::new();
        csv_field(&mut s, Some("a,b"));
        s.push('|');
        csv_field(&mut s, Some("say \"hi\""));
        s.push('|');
        csv_field(&mut s, Some("=SUM(A1)"));
        s.push('|');
        csv_field(&mut s, None);
        assert_eq!(s, "\"a,b\"|\"say \"\"hi\"\"\"|'=SUM(A1)|");
    }
}
