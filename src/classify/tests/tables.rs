//! `mentions_table`: identifiers only, any quoting, any case.

use super::super::mentions_table;

#[rustfmt::skip]
const CASES: &[(&str, &str, bool)] = &[
    ("SELECT * FROM tmp", "tmp", true),
    ("SELECT * FROM TMP", "tmp", true),
    ("select * from `tmp`", "tmp", true),
    ("SELECT * FROM db.tmp", "tmp", true),
    ("SELECT * FROM db.`tmp`", "tmp", true),
    ("SELECT * FROM `db`.`Tmp`", "tmp", true),
    ("SELECT * FROM t JOIN tmp USING (id)", "TMP", true),
    ("INSERT INTO tmp VALUES (1)", "tmp", true),
    ("DROP TEMPORARY TABLE tmp", "tmp", true),
    ("SELECT * FROM t /*! JOIN tmp USING (id) */", "tmp", true),
    ("SELECT * FROM `we``ird`", "we`ird", true),
    ("SELECT * FROM Ünïcode", "ünïcode", true),
    ("SELECT 1; SELECT * FROM tmp", "tmp", true),
    ("SELECT tmp.a FROM x AS tmp", "tmp", true),
    ("SELECT * FROM tmp2", "tmp", false),
    ("SELECT * FROM t1 JOIN tmp_orders", "tmp", false),
    ("SELECT * FROM t WHERE a = 'tmp'", "tmp", false),
    ("SELECT * FROM t WHERE a = \"tmp\"", "tmp", false),
    ("SELECT * FROM t -- tmp", "tmp", false),
    ("SELECT * FROM t # tmp", "tmp", false),
    ("SELECT * FROM t /* tmp */", "tmp", false),
    ("SELECT @tmp", "tmp", false),
    ("SELECT @@tmp", "tmp", false),
    ("", "tmp", false),
    ("SELECT * FROM tmp", "", false),
    // `'x\'` ends early under NO_BACKSLASH_ESCAPES: then `tmp` is a name
    ("SELECT 'x\\' FROM tmp'", "tmp", true),
    ("SELECT 1 /*!99999 FROM tmp */", "tmp", true),
    ("SELECT 1 /*!40101 FROM tmp */", "tmp", true),
];

#[test]
fn mentions_table_cases() {
    for (sql, name, want) in CASES {
        assert_eq!(
            mentions_table(sql, name),
            *want,
            "mentions_table({sql:?}, {name:?})"
        );
    }
}
