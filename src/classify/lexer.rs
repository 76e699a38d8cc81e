//! A MySQL lexer over bytes that borrows everything and allocates nothing.
//!
//! It knows just enough of the grammar to never be fooled about where a
//! token starts: `'..'` and `".."` strings (backslash and doubled-quote
//! escapes), `` `..` `` identifiers (doubled backticks), `-- `, `#` and
//! `/* */` comments, and `/*! .. */` / `/*M! .. */` executable comments,
//! whose content is lexed as SQL. Everything else is a word (identifier,
//! keyword or number: MySQL identifiers may start with a digit), a user or
//! system variable, `:=`, or a single punctuation byte. Nothing here can
//! panic, whatever the input.

/// What a token is. The meaningful bytes are in [`Token::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Unquoted identifier, keyword or number: `[A-Za-z0-9_$\x80-\xff]+`.
    Word,
    /// `` `ident` ``; text is the raw content (doubled backticks kept).
    Quoted,
    /// `'..'` or `".."`; text is the raw content (escapes kept).
    Str,
    /// `@name`, `@'name'`, `` @`name` ``; text is what follows the `@`.
    UserVar,
    /// `@@name`, `@@session.name`; text is what follows `@@`.
    SysVar,
    /// The `@host` of a quoted account name (`'bob'@'%'`): an `@` glued to
    /// the string or quoted name before it. Not a variable. (`root@host`
    /// lexes as a word and a user variable: `SELECT@a` is legal SQL.)
    Host,
    /// `:=`
    Assign,
    /// Any other single byte (`(`, `,`, `;`, `=`, `?`, ...); text is it.
    Punct,
}

/// One token. `start..end` is its span in the source, quotes included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token<'a> {
    pub kind: Tok,
    pub text: &'a [u8],
    pub start: usize,
    pub end: usize,
}

impl<'a> Token<'a> {
    /// Whether this is the unquoted word `kw` (ASCII case-insensitive).
    #[inline]
    pub fn is(&self, kw: &[u8]) -> bool {
        self.kind == Tok::Word && self.text.eq_ignore_ascii_case(kw)
    }

    /// Whether this is the punctuation byte `p`.
    #[inline]
    pub fn is_punct(&self, p: u8) -> bool {
        self.kind == Tok::Punct && self.text.first() == Some(&p)
    }

    /// The word's text, if this is an unquoted word.
    #[inline]
    pub fn word(&self) -> Option<&'a [u8]> {
        (self.kind == Tok::Word).then_some(self.text)
    }
}

/// How to read the text where the server's reading depends on its
/// settings or version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// Backslash escapes in strings (off under `NO_BACKSLASH_ESCAPES`).
    pub backslash: bool,
    /// Version-gated executable comments are SQL (a server older than the
    /// version, or MySQL for `/*M!`, reads them as comments).
    pub versioned: bool,
}

impl Reading {
    /// The server's default `sql_mode`, and a recent server.
    pub const DEFAULT: Reading = Reading {
        backslash: true,
        versioned: true,
    };

    /// Every reading, the default first.
    pub const ALL: [Reading; 4] = [
        Reading::DEFAULT,
        Reading {
            backslash: false,
            versioned: true,
        },
        Reading {
            backslash: true,
            versioned: false,
        },
        Reading {
            backslash: false,
            versioned: false,
        },
    ];
}

/// Executable comments gated on a version below this run on every server
/// Causeway supports (MySQL 5.7+, MariaDB 10+): no doubt about them.
const CERTAIN_BELOW: u32 = 50700;

/// The lexer. `Clone` is a cheap copy: clone it to look ahead.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// Inside `/*! .. */`: the next `*/` closes it.
    in_exec: bool,
    backslash: bool,
    versioned: bool,
    /// End of the previous token, and whether it was quoted (to tell
    /// `'bob'@'%'` from `@var`).
    prev_end: usize,
    prev_name: bool,
    /// Seen `/*!` or `/*M!`.
    pub saw_exec: bool,
    /// Seen a backslash before a quote character inside a string: the
    /// token boundaries would differ under `NO_BACKSLASH_ESCAPES`.
    pub saw_backslash_quote: bool,
    /// Seen a version-gated executable comment.
    pub saw_versioned: bool,
    /// Whether the first `FROM` names a table (not `DUAL`), once known:
    /// the fact `reads_a_table` lexes for, noted in the same pass.
    pub from_table: Option<bool>,
    /// The last token was the first `FROM`.
    after_from: bool,
}

impl Lexer<'_> {
    /// Whether another [`Reading`] could see other tokens.
    pub fn ambiguous(&self) -> bool {
        self.saw_backslash_quote || self.saw_versioned
    }
}

/// Bytes of unquoted identifiers, keywords and numbers.
static IDENT: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
        i += 1;
    }
    t
};

#[inline]
fn is_ident_byte(b: u8) -> bool {
    IDENT[b as usize]
}

/// Bytes that may start whitespace or a comment (or end an executable
/// comment): only these send the lexer into `skip_trivia`.
static TRIVIA: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b" \t\n\r\x0b\x0c#-/*";
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

impl<'a> Lexer<'a> {
    pub fn new(src: &'a [u8], reading: Reading) -> Self {
        Lexer {
            src,
            pos: 0,
            in_exec: false,
            backslash: reading.backslash,
            versioned: reading.versioned,
            prev_end: usize::MAX,
            prev_name: false,
            saw_exec: false,
            saw_backslash_quote: false,
            saw_versioned: false,
            from_table: None,
            after_from: false,
        }
    }

    /// The whole source.
    pub fn src(&self) -> &'a [u8] {
        self.src
    }

    /// Skips everything: the statement runs to the end of the input.
    pub fn skip_to_end(&mut self) {
        while self.next_token().is_some() {}
    }

    #[inline]
    fn at(&self, i: usize) -> Option<u8> {
        self.src.get(i).copied()
    }

    /// Skips whitespace and comments, entering and leaving executable
    /// comments as it goes.
    fn skip_trivia(&mut self) {
        loop {
            let Some(b) = self.at(self.pos) else { return };
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'#' => self.skip_line(),
                b'-' if self.at(self.pos + 1) == Some(b'-')
                    && self.at(self.pos + 2).is_none_or(|c| c <= b' ') =>
                {
                    self.skip_line()
                }
                b'*' if self.in_exec && self.at(self.pos + 1) == Some(b'/') => {
                    self.in_exec = false;
                    self.pos += 2;
                }
                b'/' if self.at(self.pos + 1) == Some(b'*') => self.block_comment(),
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(b) = self.at(self.pos) {
            self.pos += 1;
            if b == b'\n' {
                return;
            }
        }
    }

    /// At `/*`: either an executable comment (enter it) or a plain one.
    fn block_comment(&mut self) {
        let mariadb_only = match (self.at(self.pos + 2), self.at(self.pos + 3)) {
            (Some(b'!'), _) => false,
            (Some(b'M' | b'm'), Some(b'!')) => true,
            _ => return self.plain_comment(),
        };
        if self.in_exec {
            return self.plain_comment(); // MySQL does not nest them either
        }
        self.saw_exec = true;
        let start = self.pos;
        self.pos += if mariadb_only { 4 } else { 3 };
        // The version: 5 digits (MySQL), or 6 (MariaDB); fewer digits are
        // not a version but SQL.
        let digits = self.src.get(self.pos..).unwrap_or(&[]);
        let n = digits
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_digit())
            .count();
        let version = digits
            .iter()
            .take(n)
            .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
        let gated = mariadb_only || n == 6 || (n == 5 && version >= CERTAIN_BELOW);
        if n >= 5 {
            self.pos += n;
        }
        if gated {
            self.saw_versioned = true;
            if !self.versioned {
                self.pos = start;
                return self.plain_comment();
            }
        }
        self.in_exec = true;
    }

    /// At `/*` of a comment that is only a comment: skip it.
    fn plain_comment(&mut self) {
        // A plain comment: MySQL comments do not nest.
        let body = self.pos + 2;
        match self
            .src
            .get(body..)
            .and_then(|rest| find2(rest, b'*', b'/'))
        {
            Some(i) => self.pos = body + i + 2,
            None => self.pos = self.src.len(),
        }
    }

    /// Reads a quoted body starting after the opening quote `q`; returns
    /// the end of the content (the position of the closing quote, or the
    /// end of input) and leaves `pos` after the closing quote.
    fn quoted(&mut self, q: u8, escapes: bool) -> usize {
        loop {
            // Jump to the next byte that matters.
            let rest = self.src.get(self.pos..).unwrap_or(&[]);
            match rest.iter().position(|&c| c == q || (c == b'\\' && escapes)) {
                Some(i) => self.pos += i,
                None => {
                    self.pos = self.src.len();
                    return self.pos;
                }
            }
            let Some(b) = self.at(self.pos) else {
                return self.src.len();
            };
            if b == b'\\' && escapes {
                if let Some(n) = self.at(self.pos + 1) {
                    if n == b'\'' || n == b'"' {
                        self.saw_backslash_quote = true;
                    }
                }
                self.pos = (self.pos + 2).min(self.src.len());
            } else if b == q {
                if self.at(self.pos + 1) == Some(q) {
                    self.pos += 2;
                } else {
                    self.pos += 1;
                    return self.pos - 1;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    /// The next token, or `None` at the end of the input.
    #[inline]
    pub fn next_token(&mut self) -> Option<Token<'a>> {
        let t = self.lex_token();
        if self.from_table.is_none() {
            self.note_from(t.as_ref());
        }
        t
    }

    /// Notes whether the first `FROM` is followed by a table (as
    /// `reads_a_table` decides: anything but `DUAL`, or nothing).
    fn note_from(&mut self, t: Option<&Token<'a>>) {
        match t {
            _ if self.after_from => {
                self.from_table = Some(!t.is_some_and(|t| t.is(b"DUAL")));
            }
            Some(t) if t.is(b"FROM") => self.after_from = true,
            _ => {}
        }
    }

    #[inline]
    fn lex_token(&mut self) -> Option<Token<'a>> {
        let src = self.src;
        if src.get(self.pos).is_some_and(|&b| TRIVIA[b as usize]) {
            self.skip_trivia();
        }
        let start = self.pos;
        let rest = src.get(start..)?;
        let &b = rest.first()?;
        if !is_ident_byte(b) {
            return self.other_token(start, b);
        }
        // The common case, a word.
        let len = rest
            .iter()
            .position(|&c| !is_ident_byte(c))
            .unwrap_or(rest.len());
        self.pos = start + len;
        self.prev_end = self.pos;
        self.prev_name = false;
        let text = rest.get(..len).unwrap_or(&[]);
        Some(Token {
            kind: Tok::Word,
            text,
            start,
            end: self.pos,
        })
    }

    /// Every token but a word, starting with `b` at `start`.
    fn other_token(&mut self, start: usize, b: u8) -> Option<Token<'a>> {
        let glued = start == self.prev_end && self.prev_name;
        let (kind, text_start, text_end) = match b {
            b'\'' | b'"' => {
                self.pos += 1;
                let end = self.quoted(b, self.backslash);
                (Tok::Str, start + 1, end)
            }
            b'`' => {
                self.pos += 1;
                let end = self.quoted(b'`', false);
                (Tok::Quoted, start + 1, end)
            }
            b'@' if self.at(start + 1) == Some(b'@') => {
                let mut i = start + 2;
                while self.at(i).is_some_and(|c| is_ident_byte(c) || c == b'.') {
                    i += 1;
                }
                self.pos = i;
                (Tok::SysVar, start + 2, i)
            }
            b'@' => {
                let kind = if glued { Tok::Host } else { Tok::UserVar };
                match self.at(start + 1) {
                    Some(q @ (b'\'' | b'"' | b'`')) => {
                        self.pos = start + 2;
                        let end = self.quoted(q, q != b'`' && self.backslash);
                        (kind, start + 2, end)
                    }
                    _ => {
                        let mut i = start + 1;
                        while self.at(i).is_some_and(|c| is_ident_byte(c) || c == b'.') {
                            i += 1;
                        }
                        self.pos = i;
                        (kind, start + 1, i)
                    }
                }
            }
            b':' if self.at(start + 1) == Some(b'=') => {
                self.pos += 2;
                (Tok::Assign, start, start + 2)
            }
            _ => {
                self.pos += 1;
                (Tok::Punct, start, start + 1)
            }
        };
        self.prev_end = self.pos;
        self.prev_name = matches!(kind, Tok::Quoted | Tok::Str);
        let text = self
            .src
            .get(text_start..text_end.max(text_start))
            .unwrap_or(&[]);
        Some(Token {
            kind,
            text,
            start,
            end: self.pos,
        })
    }

    /// The next token without consuming it.
    #[inline]
    pub fn peek(&self) -> Option<Token<'a>> {
        self.clone().next_token()
    }
}

/// Position of the first `a` immediately followed by `b` in `hay`.
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    hay.windows(2).position(|w| w == [a, b])
}

/// ASCII upper-case copy of a short word on the stack, for `match`ing
/// keywords without allocating. Words longer than the buffer match nothing.
pub(crate) struct Upper {
    buf: [u8; 36],
    len: usize,
}

impl Upper {
    #[inline]
    pub fn new(w: &[u8]) -> Self {
        let mut buf = [0u8; 36];
        let len = if w.len() <= buf.len() { w.len() } else { 0 };
        for (d, s) in buf.iter_mut().zip(w.iter()).take(len) {
            *d = s.to_ascii_uppercase();
        }
        Upper { buf, len }
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}
