//! What Coupa expects of its SFTP exchange, as pure data and checks (no I/O):
//! the standard folder tree, and the rules Coupa applies to the files it
//! collects from `Incoming/<Object>/` (size, row count, UTF-8 without BOM).
//!
//! Coupa collects files from `Incoming/<Object>/` every 3–6 minutes and
//! moves them to `Archive/Incoming/<Object>/`. Which object folders exist
//! differs per Coupa instance, so a missing standard folder is a warning,
//! never an error.

use std::fmt;
use std::time::Duration;

/// The top-level folder Coupa collects uploads from.
pub const INCOMING: &str = "Incoming";
/// The top-level folder Coupa exports to.
pub const OUTGOING: &str = "Outgoing";
/// Where Coupa moves collected files (`Archive/Incoming/<Object>`).
pub const ARCHIVE_INCOMING: &str = "Archive/Incoming";

/// Standard object folders under `Incoming/` (names exact, case-sensitive).
pub const INCOMING_OBJECTS: &[&str] = &[
    "Accounts",
    "AccountValidationRules",
    "Addresses",
    "ApprovalChains",
    "BudgetLines",
    "BusinessGroups",
    "Commodities",
    "Contracts",
    "Departments",
    "ExchangeRates",
    "ExpensePayments",
    "InvoicePayments",
    "Invoices",
    "Items",
    "LookupValues",
    "Receipts",
    "RemitToAddresses",
    "Requisitions",
    "Suppliers",
    "Users",
];

/// Standard object folders under `Outgoing/`.
pub const OUTGOING_OBJECTS: &[&str] = &[
    "ExpenseReports",
    "Invoices",
    "PurchaseOrders",
    "Receipts",
    "Requisitions",
    "Suppliers",
    "SupplierInformations",
];

/// Standard object folders under `Archive/Incoming/`: the same as `Incoming/`.
pub const ARCHIVE_INCOMING_OBJECTS: &[&str] = INCOMING_OBJECTS;

/// Largest file Coupa accepts. Coupa documents the limit as "8 MB"; we read
/// that as 8 MiB (8 * 1024 * 1024 = 8,388,608 bytes). A file between
/// 8,000,000 and 8,388,608 bytes therefore passes this check but may still be
/// refused if Coupa means decimal megabytes — stay well below either.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Most data rows (records after the header) Coupa accepts in one CSV file.
pub const MAX_DATA_ROWS: u64 = 5_000;

/// Coupa collects `Incoming/` every 3–6 minutes: a file waiting longer than
/// this means collection is stuck (or the file is being refused silently).
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// The UTF-8 byte order mark Coupa does not want at the start of a CSV file.
pub const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// True when Coupa's CSV content rules (rows, BOM, UTF-8) apply to `name`:
/// it ends in `.csv`, in any letter case. The size rule applies to every file.
pub fn is_csv_name(name: &str) -> bool {
    name.len() >= 4
        && name.is_char_boundary(name.len() - 4)
        && name[name.len() - 4..].eq_ignore_ascii_case(".csv")
}

/// True when `rel_path` (relative to the mount root, `/`-separated) names
/// something inside an object folder of `Incoming/`, i.e.
/// `Incoming/<Object>/<name...>` with non-empty components. `Incoming`,
/// `Incoming/` and `Incoming/<Object>` themselves are not; neither is a path
/// with a `.` or `..` component (it could point anywhere). Leading and
/// repeated slashes are ignored. The object folder need not be a standard one
/// (instances differ), but `Incoming` must be spelled exactly.
pub fn is_incoming_path(rel_path: &[u8]) -> bool {
    let parts = rel_path.split(|&b| b == b'/').filter(|p| !p.is_empty());
    let mut n = 0;
    let mut first_is_incoming = false;
    for (i, p) in parts.enumerate() {
        if p == b"." || p == b".." {
            return false;
        }
        if i == 0 {
            first_is_incoming = p == INCOMING.as_bytes();
        }
        n += 1;
    }
    first_is_incoming && n >= 3
}

/// A Coupa file rule that a file breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsvProblem {
    /// Bigger than [`MAX_FILE_BYTES`] (applies to every file, CSV or not).
    TooLarge { size: u64 },
    /// More than [`MAX_DATA_ROWS`] data rows. `at_least` is set when only
    /// the beginning of the file was examined (the count is a lower bound).
    TooManyRows { data_rows: u64, at_least: bool },
    /// Starts with a UTF-8 byte order mark.
    Bom,
    /// Not valid UTF-8: the first bad byte is at `offset` (0-based).
    InvalidUtf8 { offset: u64 },
    /// Ends inside a double-quoted field: the closing `"` is missing, so
    /// everything after the opening quote reads as one field.
    UnterminatedQuote,
}

impl CsvProblem {
    /// Short name of the rule, for grouping and grepping.
    pub fn rule(&self) -> &'static str {
        match self {
            CsvProblem::TooLarge { .. } => "size",
            CsvProblem::TooManyRows { .. } => "rows",
            CsvProblem::Bom => "bom",
            CsvProblem::InvalidUtf8 { .. } => "utf-8",
            CsvProblem::UnterminatedQuote => "quoting",
        }
    }
}

impl fmt::Display for CsvProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvProblem::TooLarge { size } => write!(
                f,
                "size rule: {size} bytes is over Coupa's 8 MB limit ({MAX_FILE_BYTES} bytes); split the file"
            ),
            CsvProblem::TooManyRows {
                data_rows,
                at_least,
            } => write!(
                f,
                "row rule: {}{data_rows} data rows is over Coupa's {MAX_DATA_ROWS}-row limit; split the file",
                if *at_least { "at least " } else { "" }
            ),
            CsvProblem::Bom => f.write_str(
                "encoding rule: starts with a UTF-8 byte order mark (BOM); Coupa expects UTF-8 without BOM",
            ),
            CsvProblem::InvalidUtf8 { offset } => write!(
                f,
                "encoding rule: not valid UTF-8 (first bad byte at offset {offset}); Coupa expects UTF-8"
            ),
            CsvProblem::UnterminatedQuote => f.write_str(
                "CSV quoting rule: a double-quoted field is never closed (missing \")",
            ),
        }
    }
}

/// Where the record scanner is, RFC 4180 style.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// At the start of a field (record start or after a comma).
    FieldStart,
    /// Inside an unquoted field: quotes here are literal.
    Unquoted,
    /// Inside a double-quoted field: commas and line breaks are data.
    Quoted,
    /// Just saw a `"` inside a quoted field: either the first half of an
    /// escaped `""` or the closing quote.
    QuoteInQuoted,
}

/// Checks a file against Coupa's rules, fed incrementally (any chunking gives
/// the same result) or all at once with [`csv_problems`].
///
/// Row counting follows RFC 4180: a record ends at a line break (LF, with an
/// optional CR before it) outside double quotes; a line break inside a
/// double-quoted field is data; `""` inside quotes is an escaped quote; a
/// quote in the middle of an unquoted field is literal. A last record without
/// a line break counts. Empty lines (nothing but the line break) are not
/// records.
///
/// **Rows:** Coupa's 5,000 limit counts data rows, so the first record is
/// taken as the header and not counted: a header plus 5,000 data rows
/// passes, a header plus 5,001 rows is a problem.
///
/// Only names ending in `.csv` (any case) are checked for rows, BOM, UTF-8
/// and quoting; the size rule applies to every file.
#[derive(Clone, Debug)]
pub struct CsvCheck {
    csv: bool,
    /// Bytes fed so far.
    fed: u64,
    /// The first up-to-3 bytes, to spot a BOM split across `feed` calls.
    head: Vec<u8>,
    scan: Scan,
    /// Records completed so far (header included).
    records: u64,
    /// The current record has a byte other than CR/LF.
    record_has_content: bool,
    /// First invalid UTF-8 offset, once found (validation stops there).
    utf8_error: Option<u64>,
    /// An incomplete UTF-8 sequence at the end of the last chunk.
    utf8_carry: Vec<u8>,
    /// File offset of `utf8_carry[0]`.
    utf8_carry_at: u64,
}

impl CsvCheck {
    /// A check for the file called `name` (its last path component or the
    /// whole path: only the `.csv` ending matters).
    pub fn new(name: &str) -> Self {
        Self {
            csv: is_csv_name(name),
            fed: 0,
            head: Vec::with_capacity(3),
            scan: Scan::FieldStart,
            records: 0,
            record_has_content: false,
            utf8_error: None,
            utf8_carry: Vec::new(),
            utf8_carry_at: 0,
        }
    }

    /// Whether content rules apply (the name ends in `.csv`).
    pub fn is_csv(&self) -> bool {
        self.csv
    }

    /// Bytes fed so far.
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// Records seen so far, header included (a final record without a line
    /// break is only counted by `finish`).
    pub fn records_so_far(&self) -> u64 {
        self.records
    }

    /// Feeds the next bytes of the file.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.csv {
            self.fed += bytes.len() as u64;
            return;
        }
        if self.head.len() < 3 {
            let take = (3 - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.feed_utf8(bytes);
        self.feed_records(bytes);
        self.fed += bytes.len() as u64;
    }

    fn feed_records(&mut self, bytes: &[u8]) {
        let mut scan = self.scan;
        let mut content = self.record_has_content;
        let mut records = self.records;
        for &b in bytes {
            if b != b'\n' && b != b'\r' {
                content = true;
            }
            scan = match (scan, b) {
                (Scan::Quoted, b'"') => Scan::QuoteInQuoted,
                (Scan::Quoted, _) => Scan::Quoted,
                (Scan::QuoteInQuoted, b'"') => Scan::Quoted,
                (Scan::FieldStart, b'"') => Scan::Quoted,
                (_, b',') => Scan::FieldStart,
                (_, b'\n') => {
                    if content {
                        records += 1;
                    }
                    content = false;
                    Scan::FieldStart
                }
                // A CR is part of the CRLF line break; it neither starts a
                // field nor changes the state.
                (s, b'\r') => s,
                // Text after a closing quote (`"a"b`): lenient, as most
                // readers, it joins the field.
                (_, _) => Scan::Unquoted,
            };
        }
        self.scan = scan;
        self.record_has_content = content;
        self.records = records;
    }

    fn feed_utf8(&mut self, mut bytes: &[u8]) {
        if self.utf8_error.is_some() {
            return;
        }
        let mut base = self.fed;
        if !self.utf8_carry.is_empty() {
            // Complete the sequence split across the previous chunk.
            let want = utf8_seq_len(self.utf8_carry[0]);
            let take = want.saturating_sub(self.utf8_carry.len()).min(bytes.len());
            self.utf8_carry.extend_from_slice(&bytes[..take]);
            match std::str::from_utf8(&self.utf8_carry) {
                Ok(_) => {}
                Err(e) if e.error_len().is_none() => {
                    // Still incomplete: the chunk was too short.
                    return;
                }
                Err(_) => {
                    self.utf8_error = Some(self.utf8_carry_at);
                    return;
                }
            }
            self.utf8_carry.clear();
            bytes = &bytes[take..];
            base += take as u64;
        }
        if let Err(e) = std::str::from_utf8(bytes) {
            let at = e.valid_up_to();
            match e.error_len() {
                Some(_) => self.utf8_error = Some(base + at as u64),
                None => {
                    self.utf8_carry = bytes[at..].to_vec();
                    self.utf8_carry_at = base + at as u64;
                }
            }
        }
    }

    /// The problems found. `size` is the file's real size (from its
    /// attributes); when fewer bytes were fed (a download capped at
    /// [`MAX_FILE_BYTES`] + 1), the content checks cover only what was fed
    /// and the row count is a lower bound.
    pub fn finish(self, size: u64) -> Vec<CsvProblem> {
        let mut out = Vec::new();
        let size = size.max(self.fed);
        if size > MAX_FILE_BYTES {
            out.push(CsvProblem::TooLarge { size });
        }
        if !self.csv {
            return out;
        }
        let complete = self.fed >= size;
        if self.head == UTF8_BOM {
            out.push(CsvProblem::Bom);
        }
        let utf8_error = match self.utf8_error {
            Some(at) => Some(at),
            // A sequence cut off by the end of the file (not of the download).
            None if complete && !self.utf8_carry.is_empty() => Some(self.utf8_carry_at),
            None => None,
        };
        if let Some(offset) = utf8_error {
            out.push(CsvProblem::InvalidUtf8 { offset });
        }
        let mut records = self.records;
        if complete && self.record_has_content {
            records += 1;
        }
        let data_rows = records.saturating_sub(1);
        if data_rows > MAX_DATA_ROWS {
            out.push(CsvProblem::TooManyRows {
                data_rows,
                at_least: !complete,
            });
        }
        if complete && self.scan == Scan::Quoted {
            out.push(CsvProblem::UnterminatedQuote);
        }
        out
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for anything else; the
/// validator reports the bad bytes).
fn utf8_seq_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

/// [`CsvCheck`] over a whole file held in memory (`content` is all of it
/// unless `size` says the file is bigger).
pub fn csv_problems(name: &str, size: u64, content: &[u8]) -> Vec<CsvProblem> {
    let mut check = CsvCheck::new(name);
    check.feed(content);
    check.finish(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(name: &str, content: &[u8]) -> Vec<CsvProblem> {
        csv_problems(name, content.len() as u64, content)
    }

    /// Feeds `content` in chunks of `n` bytes.
    fn problems_chunked(name: &str, content: &[u8], n: usize) -> Vec<CsvProblem> {
        let mut c = CsvCheck::new(name);
        for chunk in content.chunks(n) {
            c.feed(chunk);
        }
        c.finish(content.len() as u64)
    }

    /// Every chunk size from 1 to 8 and the whole file give the same result.
    fn all_ways(name: &str, content: &[u8]) -> Vec<CsvProblem> {
        let whole = problems(name, content);
        for n in 1..=8 {
            assert_eq!(
                problems_chunked(name, content, n),
                whole,
                "chunk size {n} disagrees for {:?}",
                String::from_utf8_lossy(content)
            );
        }
        whole
    }

    fn records(content: &[u8]) -> u64 {
        let mut c = CsvCheck::new("x.csv");
        c.feed(content);
        // Peek at the count the way finish does.
        let mut n = c.records;
        if c.record_has_content {
            n += 1;
        }
        for k in 1..=5 {
            let mut c2 = CsvCheck::new("x.csv");
            for chunk in content.chunks(k) {
                c2.feed(chunk);
            }
            let mut n2 = c2.records;
            if c2.record_has_content {
                n2 += 1;
            }
            assert_eq!(n2, n, "chunk size {k}");
        }
        n
    }

    fn csv_with_rows(data_rows: usize, eol: &str, final_eol: bool) -> Vec<u8> {
        let mut s = format!("Invoice Number,Supplier,Total{eol}");
        for i in 0..data_rows {
            s.push_str(&format!("INV-{i},Acme,1.00"));
            if i + 1 < data_rows || final_eol {
                s.push_str(eol);
            }
        }
        s.into_bytes()
    }

    #[test]
    fn standard_folders() {
        assert_eq!(INCOMING_OBJECTS.len(), 20);
        assert_eq!(OUTGOING_OBJECTS.len(), 7);
        assert_eq!(ARCHIVE_INCOMING_OBJECTS, INCOMING_OBJECTS);
        assert!(INCOMING_OBJECTS.contains(&"AccountValidationRules"));
        assert!(INCOMING_OBJECTS.contains(&"RemitToAddresses"));
        assert!(OUTGOING_OBJECTS.contains(&"SupplierInformations"));
        // No duplicates.
        for list in [INCOMING_OBJECTS, OUTGOING_OBJECTS] {
            let mut v = list.to_vec();
            v.sort_unstable();
            v.dedup();
            assert_eq!(v.len(), list.len());
        }
    }

    #[test]
    fn limits() {
        assert_eq!(MAX_FILE_BYTES, 8_388_608);
        assert_eq!(MAX_DATA_ROWS, 5000);
        assert_eq!(STALE_AFTER, Duration::from_secs(900));
    }

    #[test]
    fn csv_names() {
        assert!(is_csv_name("a.csv"));
        assert!(is_csv_name("A.CSV"));
        assert!(is_csv_name("inv_2024.Csv"));
        assert!(is_csv_name(".csv"));
        assert!(!is_csv_name("a.csv.gz"));
        assert!(!is_csv_name("a.xml"));
        assert!(!is_csv_name("csv"));
        assert!(!is_csv_name("acsv"));
        assert!(!is_csv_name(""));
        assert!(!is_csv_name("é.cs"));
        assert!(is_csv_name("é.csv"));
        assert!(!is_csv_name("ééé"));
    }

    #[test]
    fn incoming_paths() {
        assert!(is_incoming_path(b"Incoming/Invoices/inv.csv"));
        assert!(is_incoming_path(b"/Incoming/Invoices/inv.csv"));
        assert!(is_incoming_path(b"Incoming//Invoices/inv.csv"));
        assert!(is_incoming_path(b"Incoming/Custom/x"));
        assert!(is_incoming_path(b"Incoming/Invoices/sub/x.csv"));
        assert!(is_incoming_path(
            b"Incoming/Invoices/.inv.csv.coupafs-abc123"
        ));
        assert!(!is_incoming_path(b"Incoming"));
        assert!(!is_incoming_path(b"Incoming/"));
        assert!(!is_incoming_path(b"Incoming/Invoices"));
        assert!(!is_incoming_path(b"Incoming/Invoices/"));
        assert!(!is_incoming_path(b"Incoming/inv.csv"));
        assert!(!is_incoming_path(b"incoming/Invoices/inv.csv"));
        assert!(!is_incoming_path(b"IncomingX/Invoices/inv.csv"));
        assert!(!is_incoming_path(b"Outgoing/Invoices/inv.csv"));
        assert!(!is_incoming_path(b"Archive/Incoming/Invoices/inv.csv"));
        assert!(!is_incoming_path(b"Incoming/../Outgoing/x.csv"));
        assert!(!is_incoming_path(b"Incoming/Invoices/../../x.csv"));
        assert!(!is_incoming_path(b"./Incoming/Invoices/x.csv"));
        assert!(!is_incoming_path(b""));
        assert!(!is_incoming_path(b"/"));
    }

    #[test]
    fn clean_csv_has_no_problems() {
        assert_eq!(all_ways("a.csv", b"h1,h2\n1,2\n"), vec![]);
        assert_eq!(all_ways("a.csv", b"h1,h2\r\n1,2\r\n"), vec![]);
        assert_eq!(
            all_ways(
                "a.csv",
                "Name\nCaf\u{e9} M\u{fc}ller \u{1F600}\n".as_bytes()
            ),
            vec![]
        );
        assert_eq!(all_ways("a.csv", b""), vec![]);
    }

    #[test]
    fn record_counting() {
        assert_eq!(records(b""), 0);
        assert_eq!(records(b"a"), 1);
        assert_eq!(records(b"a\n"), 1);
        assert_eq!(records(b"a\nb"), 2, "a final line without newline counts");
        assert_eq!(records(b"a\r\nb\r\n"), 2);
        assert_eq!(records(b"a\n\n\nb\n\n"), 2, "empty lines are not records");
        assert_eq!(records(b"a\r\n\r\nb"), 2);
        assert_eq!(records(b"\n\n"), 0);
        assert_eq!(
            records(b"h\n\"x\ny\",2\n"),
            2,
            "newline inside quotes is data"
        );
        assert_eq!(records(b"h\n\"x\r\n\r\ny\"\n"), 2);
        assert_eq!(records(b"h\n\"a \"\"q\"\"\nb\",c\n"), 2, "escaped quotes");
        assert_eq!(records(b"h\n\"\"\n"), 2, "an empty quoted field is content");
        assert_eq!(records(b"h\n1,\"\"\"\"\n2\n"), 3);
        assert_eq!(
            records(b"h\nab\"c\nd\n"),
            3,
            "quote inside unquoted field is literal"
        );
        assert_eq!(records(b"h\n\"a\"b\nc\n"), 3, "text after a closing quote");
        assert_eq!(records(b"h\n,\"x\ny\"\n"), 2, "quoted field after a comma");
        assert_eq!(records(b"h\n a\n"), 2, "whitespace is content");
        assert_eq!(records(b"h\n\"open\nnever\nclosed"), 2);
    }

    #[test]
    fn row_limit_counts_data_rows_after_the_header() {
        for eol in ["\n", "\r\n"] {
            for final_eol in [true, false] {
                let ok = csv_with_rows(5000, eol, final_eol);
                assert_eq!(problems("a.csv", &ok), vec![], "{eol:?} {final_eol}");
                let bad = csv_with_rows(5001, eol, final_eol);
                assert_eq!(
                    problems("a.csv", &bad),
                    vec![CsvProblem::TooManyRows {
                        data_rows: 5001,
                        at_least: false
                    }],
                    "{eol:?} {final_eol}"
                );
                assert_eq!(problems_chunked("a.csv", &bad, 7), problems("a.csv", &bad));
            }
        }
    }

    #[test]
    fn quoted_newlines_do_not_make_rows() {
        // 5000 data rows, each with a line break inside a quoted field: 10,001
        // lines but 5,001 records.
        let mut s = String::from("Id,Note\n");
        for i in 0..5000 {
            s.push_str(&format!("{i},\"line one\nline two\"\n"));
        }
        assert_eq!(all_ways("a.csv", s.as_bytes()), vec![]);
        s.push_str("5000,x\n");
        assert_eq!(
            problems("a.csv", s.as_bytes()),
            vec![CsvProblem::TooManyRows {
                data_rows: 5001,
                at_least: false
            }]
        );
    }

    #[test]
    fn blank_lines_do_not_make_rows() {
        let mut s = String::from("Id\n");
        for i in 0..5000 {
            s.push_str(&format!("{i}\n\n"));
        }
        assert_eq!(problems("a.csv", s.as_bytes()), vec![]);
    }

    #[test]
    fn bom() {
        let mut v = UTF8_BOM.to_vec();
        v.extend_from_slice(b"h\n1\n");
        assert_eq!(all_ways("a.csv", &v), vec![CsvProblem::Bom]);
        assert_eq!(all_ways("a.csv", UTF8_BOM), vec![CsvProblem::Bom]);
        // Split exactly inside the BOM.
        let mut c = CsvCheck::new("a.csv");
        c.feed(&v[..1]);
        c.feed(&v[1..2]);
        c.feed(&v[2..]);
        assert_eq!(c.finish(v.len() as u64), vec![CsvProblem::Bom]);
        // Not at the start: only a character (a ZWNBSP), not a BOM.
        assert_eq!(all_ways("a.csv", "h\n\u{feff}x\n".as_bytes()), vec![]);
        // Partial BOM prefix followed by something else is invalid UTF-8,
        // not a BOM.
        assert_eq!(
            all_ways("a.csv", b"\xEF\xBBh\n"),
            vec![CsvProblem::InvalidUtf8 { offset: 0 }]
        );
        // Non-CSV files are not checked for it.
        assert_eq!(all_ways("a.xml", &v), vec![]);
        // UTF-16 BOM: invalid UTF-8.
        assert_eq!(
            all_ways("a.csv", b"\xFF\xFEh\x00"),
            vec![CsvProblem::InvalidUtf8 { offset: 0 }]
        );
    }

    #[test]
    fn invalid_utf8() {
        // Latin-1 é.
        assert_eq!(
            all_ways("a.csv", b"Name\nCaf\xE9\n"),
            vec![CsvProblem::InvalidUtf8 { offset: 8 }]
        );
        // Only the first bad byte is reported.
        assert_eq!(
            all_ways("a.csv", b"a\xFFb\xFEc"),
            vec![CsvProblem::InvalidUtf8 { offset: 1 }]
        );
        // A lone continuation byte.
        assert_eq!(
            all_ways("a.csv", b"ab\x80"),
            vec![CsvProblem::InvalidUtf8 { offset: 2 }]
        );
        // A lead byte followed by ASCII.
        assert_eq!(
            all_ways("a.csv", b"ab\xE2\x82x\n"),
            vec![CsvProblem::InvalidUtf8 { offset: 2 }]
        );
        // Overlong encoding and a surrogate are invalid.
        assert_eq!(
            all_ways("a.csv", b"x\xC0\xAF"),
            vec![CsvProblem::InvalidUtf8 { offset: 1 }]
        );
        assert_eq!(
            all_ways("a.csv", b"xy\xED\xA0\x80"),
            vec![CsvProblem::InvalidUtf8 { offset: 2 }]
        );
        // Truncated at end of file.
        assert_eq!(
            all_ways("a.csv", b"abc\xF0\x9F\x98"),
            vec![CsvProblem::InvalidUtf8 { offset: 3 }]
        );
        // Non-CSV: not checked.
        assert_eq!(all_ways("a.txt", b"\xFF\xFE"), vec![]);
    }

    #[test]
    fn multibyte_split_across_every_boundary() {
        let text = "h\n\u{e9}\u{20ac}\u{1F600}\u{10FFFF}x\n".as_bytes();
        for cut in 0..=text.len() {
            for cut2 in cut..=text.len() {
                let mut c = CsvCheck::new("a.csv");
                c.feed(&text[..cut]);
                c.feed(&text[cut..cut2]);
                c.feed(&text[cut2..]);
                assert_eq!(c.finish(text.len() as u64), vec![], "cuts {cut},{cut2}");
            }
        }
    }

    #[test]
    fn empty_feeds_are_harmless() {
        let mut c = CsvCheck::new("a.csv");
        c.feed(b"");
        c.feed(b"\xE2");
        c.feed(b"");
        c.feed(b"\x82");
        c.feed(b"");
        c.feed(b"\xAC\n");
        assert_eq!(c.finish(5), vec![]);
    }

    #[test]
    fn size_rule_applies_to_every_file() {
        for name in ["a.csv", "a.xml", "noext"] {
            assert_eq!(csv_problems(name, MAX_FILE_BYTES, b""), vec![]);
            let p = csv_problems(name, MAX_FILE_BYTES + 1, b"");
            assert_eq!(
                p.first(),
                Some(&CsvProblem::TooLarge {
                    size: MAX_FILE_BYTES + 1
                })
            );
        }
        // Bytes fed beyond the given size count.
        let mut c = CsvCheck::new("a.bin");
        c.feed(&vec![b'x'; MAX_FILE_BYTES as usize + 1]);
        assert_eq!(
            c.finish(0),
            vec![CsvProblem::TooLarge {
                size: MAX_FILE_BYTES + 1
            }]
        );
    }

    #[test]
    fn partial_download_gives_lower_bounds() {
        // 6000 rows seen in the first part of a bigger file.
        let part = csv_with_rows(6000, "\n", false);
        let size = MAX_FILE_BYTES + 10;
        let p = csv_problems("big.csv", size, &part);
        assert_eq!(
            p,
            vec![
                CsvProblem::TooLarge { size },
                CsvProblem::TooManyRows {
                    data_rows: 5999, // the cut-off last line is not counted
                    at_least: true
                }
            ]
        );
        // A multibyte sequence cut by the download is not an error, nor an
        // open quote.
        assert_eq!(csv_problems("big.csv", 100, b"h\n\"abc\xE2\x82"), vec![]);
    }

    #[test]
    fn unterminated_quote() {
        assert_eq!(
            all_ways("a.csv", b"h\n\"abc\n"),
            vec![CsvProblem::UnterminatedQuote]
        );
        assert_eq!(all_ways("a.csv", b"h\n\"abc\""), vec![]);
        assert_eq!(all_ways("a.csv", b"h\n\"a\"\"\"\n"), vec![]);
        assert_eq!(
            all_ways("a.csv", b"h\n\"a\"\"\n"),
            vec![CsvProblem::UnterminatedQuote]
        );
    }

    #[test]
    fn several_problems_at_once() {
        let mut v = UTF8_BOM.to_vec();
        v.extend(csv_with_rows(5001, "\n", true));
        v.extend_from_slice(b"\xFF\n");
        let p = all_ways("A.CSV", &v);
        assert_eq!(
            p,
            vec![
                CsvProblem::Bom,
                CsvProblem::InvalidUtf8 {
                    offset: v.len() as u64 - 2
                },
                CsvProblem::TooManyRows {
                    data_rows: 5002,
                    at_least: false
                },
            ]
        );
    }

    #[test]
    fn messages_name_the_rule() {
        let cases = [
            (
                CsvProblem::TooLarge { size: 9_000_000 },
                "size rule",
                "9000000 bytes",
            ),
            (
                CsvProblem::TooManyRows {
                    data_rows: 5001,
                    at_least: false,
                },
                "row rule",
                "5001 data rows",
            ),
            (
                CsvProblem::TooManyRows {
                    data_rows: 7000,
                    at_least: true,
                },
                "row rule",
                "at least 7000 data rows",
            ),
            (CsvProblem::Bom, "encoding rule", "byte order mark"),
            (
                CsvProblem::InvalidUtf8 { offset: 12 },
                "encoding rule",
                "offset 12",
            ),
            (
                CsvProblem::UnterminatedQuote,
                "quoting rule",
                "never closed",
            ),
        ];
        for (p, rule, detail) in cases {
            let s = p.to_string();
            assert!(s.contains(rule), "{s}");
            assert!(s.contains(detail), "{s}");
            assert!(!s.contains('\n'), "one line: {s}");
        }
        assert_eq!(CsvProblem::Bom.rule(), "bom");
        assert_eq!(CsvProblem::TooLarge { size: 0 }.rule(), "size");
    }

    #[test]
    fn counters() {
        let mut c = CsvCheck::new("x.CSV");
        assert!(c.is_csv());
        c.feed(b"a\nb\nc");
        assert_eq!(c.bytes_fed(), 5);
        assert_eq!(c.records_so_far(), 2);
        assert!(!CsvCheck::new("x.txt").is_csv());
    }
}
