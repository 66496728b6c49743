//! The `_cat` APIs: compact tables for humans (`?v` adds the header line) or JSON for scripts
//! (`?format=json`), with Elasticsearch's column names. `?h=` picks columns (with `*`
//! wildcards), `?bytes=` and `?time=` fix the units of sizes and durations.
//!
//! This module owns what every `_cat` API shares: parsing those parameters ([`CatRequest`]),
//! the value formats ([`format_size`], [`format_time`]) and rendering ([`CatRequest::respond`]).
//! Each API builds its rows with every column, in its table's order; the request picks and
//! renders the selected ones.

pub mod count;
pub mod health;
pub mod indices;
pub mod nodes;
pub mod recovery;
pub mod shards;

use std::time::{Duration, SystemTime};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{Map, Value};

use super::{ok, NodeState, Params};
use crate::error::RestError;

/// The routes of every `_cat` API.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .merge(count::routes())
        .merge(health::routes())
        .merge(indices::routes())
        .merge(nodes::routes())
        .merge(recovery::routes())
        .merge(shards::routes())
}

/// The `epoch` (seconds) and `timestamp` (`HH:MM:SS`, UTC) cells of `time`, as the `_cat`
/// APIs that report a moment show it.
pub fn epoch_and_timestamp(time: SystemTime) -> [String; 2] {
    let seconds = crate::rest::recovery::epoch_millis(time) / 1000;
    let of_day = seconds % 86_400;
    [
        seconds.to_string(),
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60
        ),
    ]
}

/// One column of a `_cat` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Elasticsearch's name of the column.
    pub name: &'static str,
    /// Numbers are right-aligned in the text table.
    pub numeric: bool,
    /// Shown when `?h=` does not choose (Elasticsearch hides some columns by default).
    pub default: bool,
}

impl Column {
    /// A text column shown by default.
    pub const fn text(name: &'static str) -> Column {
        Column {
            name,
            numeric: false,
            default: true,
        }
    }

    /// A numeric column shown by default.
    pub const fn number(name: &'static str) -> Column {
        Column {
            name,
            numeric: true,
            default: true,
        }
    }

    /// The same column, shown only when `?h=` asks for it.
    pub const fn hidden(self) -> Column {
        Column {
            default: false,
            ..self
        }
    }
}

/// The parameters every `_cat` API accepts.
const COMMON_PARAMS: &[&str] = &["v", "format", "h", "bytes", "time", "s", "help"];

/// A parsed `_cat` request: output format, selected columns, units.
#[derive(Debug)]
pub struct CatRequest {
    /// The API's name, for error messages (`_cat/indices`).
    api: &'static str,
    /// Every column of the table, in row order.
    table: &'static [Column],
    /// Positions in `table` of the selected columns, in display order.
    selected: Vec<usize>,
    /// `?v`: print the header line.
    header_line: bool,
    /// `?format=json`.
    json: bool,
    /// `?bytes=`: a fixed size unit.
    pub bytes_unit: Option<String>,
    /// `?time=`: a fixed time unit.
    pub time_unit: Option<String>,
}

impl CatRequest {
    /// Parses `params` for the table `table` of `api`; `extra` lists the API's own parameters.
    /// `?s=` is accepted only when it names `sorted_by` (the order rows come in).
    pub fn parse(
        api: &'static str,
        table: &'static [Column],
        params: &Params,
        extra: &[&str],
        sorted_by: &str,
    ) -> Result<CatRequest, RestError> {
        let allowed: Vec<&str> = COMMON_PARAMS.iter().chain(extra).copied().collect();
        params.allow(&allowed)?;
        let json = match params.get("format") {
            None | Some("text" | "txt") => false,
            Some("json") => true,
            Some(other) => {
                return Err(RestError::illegal_argument(format!(
                    "format [{other}] is not supported by Tandem's _cat APIs (text or json)"
                )))
            }
        };
        if let Some(sort) = params.get("s") {
            if sort != sorted_by && sort != format!("{sorted_by}:asc") {
                return Err(RestError::illegal_argument(format!(
                    "sorting {api} by [{sort}] is not supported by Tandem (rows are sorted by {sorted_by})"
                )));
            }
        }
        let selected = match params.get("h") {
            None => (0..table.len()).filter(|&i| table[i].default).collect(),
            Some(wanted) => select_columns(api, table, wanted)?,
        };
        let bytes_unit = params.get("bytes").map(str::to_string);
        if let Some(unit) = &bytes_unit {
            format_size(0, Some(unit))?;
        }
        let time_unit = params.get("time").map(str::to_string);
        if let Some(unit) = &time_unit {
            format_time(Duration::ZERO, Some(unit))?;
        }
        Ok(CatRequest {
            api,
            table,
            selected,
            header_line: params.flag("v", false)?,
            json,
            bytes_unit,
            time_unit,
        })
    }

    /// Leaves the columns `names` out of the selection (`_cat/health?ts=false`).
    pub fn hide(&mut self, names: &[&str]) {
        let table = self.table;
        self.selected.retain(|&i| !names.contains(&table[i].name));
    }

    /// A size cell in the requested unit.
    pub fn size(&self, bytes: u64) -> String {
        // The unit was validated by `parse`.
        format_size(bytes, self.bytes_unit.as_deref()).unwrap_or_else(|_| bytes.to_string())
    }

    /// A duration cell in the requested unit.
    pub fn time(&self, duration: Duration) -> String {
        format_time(duration, self.time_unit.as_deref())
            .unwrap_or_else(|_| duration.as_millis().to_string())
    }

    /// Renders `rows` (every column of the table, in table order) as the requested table.
    pub fn respond(&self, rows: Vec<Vec<String>>) -> Result<Response, RestError> {
        for row in &rows {
            assert_eq!(
                row.len(),
                self.table.len(),
                "{}: a row per column",
                self.api
            );
        }
        let columns: Vec<Column> = self.selected.iter().map(|&i| self.table[i]).collect();
        let cells: Vec<Vec<String>> = rows
            .into_iter()
            .map(|row| self.selected.iter().map(|&i| row[i].clone()).collect())
            .collect();
        if self.json {
            let objects = cells
                .into_iter()
                .map(|values| {
                    let object: Map<String, Value> = columns
                        .iter()
                        .zip(values)
                        .map(|(column, value)| (column.name.to_string(), Value::String(value)))
                        .collect();
                    Value::Object(object)
                })
                .collect();
            return Ok(ok(Value::Array(objects)));
        }
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
            text_table(&columns, &cells, self.header_line),
        )
            .into_response())
    }
}

/// The columns `h=` names (comma-separated, `*` wildcards), in the order given.
fn select_columns(api: &str, table: &[Column], wanted: &str) -> Result<Vec<usize>, RestError> {
    let mut selected = Vec::new();
    for name in wanted
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let before = selected.len();
        selected.extend(
            (0..table.len())
                .filter(|&i| super::index_expression::wildcard_matches(name, table[i].name)),
        );
        if selected.len() == before {
            return Err(RestError::illegal_argument(format!(
                "unknown column [{name}] for {api}"
            )));
        }
    }
    Ok(selected)
}

/// Byte sizes as Elasticsearch shows them: `bytes=b|kb|mb|gb|tb` gives a whole number in that
/// unit; without it, a human form such as `4.5kb`.
pub fn format_size(bytes: u64, unit: Option<&str>) -> Result<String, RestError> {
    const UNITS: &[(&str, u64)] = &[
        ("b", 1),
        ("kb", 1 << 10),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("tb", 1 << 40),
    ];
    if let Some(unit) = unit {
        let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(RestError::illegal_argument(format!(
                "failed to parse [bytes] value [{unit}]: expected b, kb, mb, gb or tb"
            )));
        };
        return Ok((bytes / scale).to_string());
    }
    let (name, scale) = UNITS
        .iter()
        .rev()
        .find(|(_, scale)| bytes >= *scale)
        .copied()
        .unwrap_or(("b", 1));
    if scale == 1 {
        return Ok(format!("{bytes}b"));
    }
    let value = bytes as f64 / scale as f64;
    let text = format!("{value:.1}");
    Ok(format!("{}{name}", text.trim_end_matches(".0")))
}

/// Durations as Elasticsearch shows them: `time=d|h|m|s|ms|micros|nanos` gives a whole number
/// in that unit; without it, a human form such as `1.2s` or `340ms`.
pub fn format_time(duration: Duration, unit: Option<&str>) -> Result<String, RestError> {
    const UNITS: &[(&str, u128)] = &[
        ("nanos", 1),
        ("micros", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
        ("d", 86_400_000_000_000),
    ];
    let nanos = duration.as_nanos();
    if let Some(unit) = unit {
        let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(RestError::illegal_argument(format!(
                "failed to parse [time] value [{unit}]: expected d, h, m, s, ms, micros or nanos"
            )));
        };
        return Ok((nanos / scale).to_string());
    }
    // Human form: the largest unit from milliseconds up that the duration reaches.
    let (name, scale) = UNITS[2..]
        .iter()
        .rev()
        .find(|(_, scale)| nanos >= *scale)
        .copied()
        .unwrap_or(("ms", 1_000_000));
    if name == "ms" {
        return Ok(format!("{}ms", nanos / scale));
    }
    let text = format!("{:.1}", nanos as f64 / scale as f64);
    Ok(format!("{}{name}", text.trim_end_matches(".0")))
}

fn text_table(columns: &[Column], rows: &[Vec<String>], header_line: bool) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|column| if header_line { column.name.len() } else { 0 })
        .collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let render = |values: &[String], out: &mut String| {
        let line: Vec<String> = values
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((value, column), width)| {
                if column.numeric {
                    format!("{value:>width$}")
                } else {
                    format!("{value:<width$}")
                }
            })
            .collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    if header_line {
        let header: Vec<String> = columns
            .iter()
            .map(|column| column.name.to_string())
            .collect();
        render(&header, &mut out);
    }
    for row in rows {
        render(row, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_show_as_epoch_seconds_and_utc_time_of_day() {
        use std::time::UNIX_EPOCH;
        let time = UNIX_EPOCH + Duration::from_millis(1_796_517_554_603);
        assert_eq!(epoch_and_timestamp(time), ["1796517554", "00:39:14"]);
    }

    #[test]
    fn sizes_read_like_elasticsearch() {
        assert_eq!(format_size(225, None).unwrap(), "225b");
        assert_eq!(format_size(4608, None).unwrap(), "4.5kb");
        assert_eq!(format_size(1 << 20, None).unwrap(), "1mb");
        assert_eq!(format_size(3 << 20, Some("kb")).unwrap(), "3072");
        assert!(format_size(1, Some("parsecs")).is_err());
    }

    #[test]
    fn times_read_like_elasticsearch() {
        assert_eq!(
            format_time(Duration::from_millis(340), None).unwrap(),
            "340ms"
        );
        assert_eq!(
            format_time(Duration::from_millis(1250), None).unwrap(),
            "1.2s"
        );
        assert_eq!(format_time(Duration::from_secs(120), None).unwrap(), "2m");
        assert_eq!(
            format_time(Duration::from_millis(1250), Some("ms")).unwrap(),
            "1250"
        );
        assert_eq!(format_time(Duration::from_secs(3), Some("s")).unwrap(), "3");
        assert!(format_time(Duration::ZERO, Some("fortnights")).is_err());
    }

    #[test]
    fn the_text_table_aligns_numbers_right() {
        let rows = vec![
            vec!["open".to_string(), "a".to_string(), "5".to_string()],
            vec!["close".to_string(), "bbb".to_string(), "".to_string()],
        ];
        let columns = [
            Column::text("status"),
            Column::text("index"),
            Column::number("docs.count"),
        ];
        let table = text_table(&columns, &rows, true);
        assert_eq!(
            table,
            "status index docs.count\nopen   a              5\nclose  bbb\n"
        );
    }

    #[test]
    fn columns_are_selected_by_name_and_wildcard() {
        const TABLE: &[Column] = &[
            Column::text("index"),
            Column::number("docs.count"),
            Column::number("docs.deleted"),
        ];
        assert_eq!(
            select_columns("t", TABLE, "docs.*,index").unwrap(),
            vec![1, 2, 0]
        );
        assert!(select_columns("t", TABLE, "nope").is_err());
    }
}
