//! Corpus tests for the PostgreSQL classifier: expected (Intent, Reason) per statement.

use super::pg::{cheap_path, classify, classify_statement, full_path, significant_tokens};
use super::{Classification, Classifier, ClassifierSettings, Hint, Intent, Reason, RouteOverride};

type Want = (Intent, Reason);

const READ: Want = (Intent::Read, Reason::Read);
const EMPTY: Want = (Intent::Read, Reason::Empty);
const TXN: Want = (Intent::TxnControl, Reason::Transaction);
const SESSION: Want = (Intent::SessionSet, Reason::Session);
const BEGIN_RW: Want = (Intent::Begin { read_only: false }, Reason::Transaction);
const BEGIN_RO: Want = (Intent::Begin { read_only: true }, Reason::Transaction);

const fn w(r: Reason) -> Want {
    (Intent::Write, r)
}
const fn pin(r: Reason) -> Want {
    (Intent::Pin, r)
}
const fn route(r: RouteOverride) -> Want {
    (Intent::ProxyRoute(r), Reason::Session)
}

const WRITE: Want = w(Reason::Write);
const DDL: Want = w(Reason::Ddl);
const LOCKING: Want = w(Reason::LockingRead);
const WFN: Want = w(Reason::WriteFunction);
const MCTE: Want = w(Reason::ModifyingCte);
const PARSE: Want = w(Reason::ParseError);
const UNKNOWN: Want = w(Reason::Unknown);
const PRIMARY: Want = w(Reason::PrimaryState);

/// psql `\d t`: the catalog lookup it sends first.
const PSQL_D_LOOKUP: &str = "SELECT c.oid,\n  n.nspname,\n  c.relname\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\nWHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 2, 3;";

/// psql `\dt`.
const PSQL_DT: &str = "SELECT n.nspname as \"Schema\",\n  c.relname as \"Name\",\n  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as \"Type\",\n  pg_catalog.pg_get_userbyid(c.relowner) as \"Owner\"\nFROM pg_catalog.pg_class c\n     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam\nWHERE c.relkind IN ('r','p','')\n      AND n.nspname <> 'pg_catalog'\n      AND n.nspname !~ '^pg_toast'\n      AND n.nspname <> 'information_schema'\n  AND pg_catalog.pg_table_is_visible(c.oid)\nORDER BY 1,2;";

/// psql `\d t`: the column query.
const PSQL_D_COLUMNS: &str = "SELECT a.attname,\n  pg_catalog.format_type(a.atttypid, a.atttypmod),\n  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)\n   FROM pg_catalog.pg_attrdef d\n   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),\n  a.attnotnull,\n  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t\n   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,\n  a.attidentity,\n  a.attgenerated\nFROM pg_catalog.pg_attribute a\nWHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped\nORDER BY a.attnum;";

/// psql `\d t`: the table-info query.
const PSQL_D_INFO: &str = "SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')\n, c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname\nFROM pg_catalog.pg_class c\n LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)\nLEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)\nWHERE c.oid = '16384';";

/// pgbench's partition check during initialization.
const PGBENCH_PARTITIONS: &str = "select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = 'pgbench_accounts' and o.n is not null group by 1, 2 order by 1 asc limit 1";

/// Extra writer configured in the corpus runs.
fn extra() -> Vec<String> {
    vec!["my_writer".to_string(), "lower_but_writes".to_string()]
}

#[rustfmt::skip]
pub(super) const CORPUS: &[(&str, Want)] = &[
    // ---- plain reads
    ("SELECT 1", READ),
    ("select 1", READ),
    ("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;", READ),
    ("select count(*) from pgbench_branches", READ),
    ("SELECT * FROM t WHERE a = $1", READ),
    ("SELECT a, b FROM t ORDER BY a LIMIT 10 OFFSET 5", READ),
    ("SELECT DISTINCT ON (a) a, b FROM t", READ),
    ("SELECT now(), current_timestamp, version()", READ),
    ("SELECT lower(name), upper(name), length(name) FROM users", READ),
    ("SELECT coalesce(a, 0) + abs(b) FROM t", READ),
    ("SELECT * FROM generate_series(1, 10) g(i)", READ),
    ("SELECT x::numeric(10,2), 'a'::varchar(3) FROM t", READ),
    ("SELECT CAST(x AS character varying(10)) FROM t", READ),
    ("SELECT count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b) FROM t", READ),
    ("SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t", READ),
    ("SELECT * FROM t WHERE a IN (1, 2, 3)", READ),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", READ),
    ("SELECT * FROM t WHERE a = ANY(ARRAY[1, 2])", READ),
    ("SELECT * FROM (SELECT a FROM t) s", READ),
    ("SELECT * FROM (SELECT a FROM t) AS s(x)", READ),
    ("SELECT * FROM t JOIN LATERAL (SELECT 1) x ON true", READ),
    ("SELECT * FROM t LEFT JOIN u USING (id)", READ),
    ("WITH x AS (SELECT 1 AS a) SELECT * FROM x", READ),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", READ),
    ("WITH a AS MATERIALIZED (SELECT 1), b(c) AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b", READ),
    ("VALUES (1, 'a'), (2, 'b')", READ),
    ("TABLE t", READ),
    ("TABLE public.t;", READ),
    ("(SELECT 1) UNION (SELECT 2)", READ),
    ("SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3", READ),
    ("SHOW search_path", READ),
    ("SHOW ALL", PRIMARY),
    ("SHOW TRANSACTION ISOLATION LEVEL", READ),
    ("SELECT pg_is_in_recovery()", READ),
    ("SELECT pg_last_wal_replay_lsn()", PRIMARY),
    ("SELECT inet_server_addr(), inet_server_port()", READ),
    ("SELECT current_setting('server_version_num')", READ),
    ("SELECT pg_sleep(0.1)", READ),
    ("SELECT pg_backend_pid()", READ),
    ("SELECT count(*) FROM pg_prepared_xacts", PRIMARY),
    ("SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = current_database()", PRIMARY),
    ("SELECT * FROM pg_stat_activity", PRIMARY),
    ("SELECT * FROM PG_LOCKS l JOIN t ON true", PRIMARY),
    ("SELECT relname FROM pg_statio_user_tables", PRIMARY),
    ("SELECT slot_name FROM pg_replication_slots", PRIMARY),
    ("SELECT txid_current_snapshot(), pg_current_snapshot()", PRIMARY),
    ("SELECT current_setting('transaction_read_only')", PRIMARY),
    ("SHOW in_hot_standby", PRIMARY),
    ("WITH a AS (SELECT pid FROM pg_stat_replication) SELECT * FROM a", PRIMARY),
    ("SELECT * FROM pg_stats", READ),
    ("SELECT md5(random()::text)", READ),
    ("SELECT json_build_object('a', 1), jsonb_agg(t) FROM t", READ),
    ("SELECT to_char(now(), 'YYYY'), date_trunc('day', now()), extract(epoch from now())", READ),
    ("SELECT string_agg(name, ',') FROM t GROUP BY a HAVING count(*) > 1", READ),
    ("SELECT substring('abc' from 1 for 2), trim(both 'x' from 'xax')", READ),
    ("SELECT pg_catalog.lower('A')", READ),
    ("SELECT \"count\"(*) FROM t", READ),
    ("SELECT * FROM t TABLESAMPLE BERNOULLI (10) REPEATABLE (42)", READ),
    ("SELECT 1 FROM t GROUP BY GROUPING SETS ((a), (b)), ROLLUP (a), CUBE (b)", READ),
    ("SELECT * FROM t WHERE a @> '{1}' AND b ~* 'x'", READ),
    ("SELECT 'it''s; not a statement'", READ),
    ("SELECT $$ DELETE FROM t; $$", READ),
    ("SELECT 'FOR UPDATE' AS s", READ),
    ("SELECT 'nextval(1)' AS s", READ),
    ("SELECT a FROM t WHERE b BETWEEN 1 AND 2 AND c LIKE 'x%'", READ),
    ("SELECT CASE WHEN a > 0 THEN 'p' ELSE 'n' END FROM t", READ),
    ("SELECT greatest(1, 2), least(3, 4), round(1.5), random()", READ),
    ("SELECT array_agg(a ORDER BY b) FROM t", READ),
    ("SELECT row_number() OVER (ORDER BY a) FROM t", READ),
    ("SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY AS u(x, n)", READ),
    ("SELECT EXISTS (SELECT 1)", READ),
    ("SELECT $1::int, $2::text", READ),
    ("SELECT E'a\\nb', U&'d\\0061t'", READ),
    ("SELECT has_table_privilege('t', 'SELECT')", READ),
    ("SELECT pg_get_viewdef('v'::regclass)", READ),
    ("SELECT pg_size_pretty(pg_database_size(current_database()))", READ),
    ("select * from t where a = 1 -- trailing comment", READ),
    ("SELECT /* ; */ 1", READ),
    (PSQL_D_LOOKUP, READ),
    (PSQL_DT, READ),
    (PSQL_D_COLUMNS, READ),
    (PSQL_D_INFO, READ),
    (PGBENCH_PARTITIONS, READ),
    // ---- EXPLAIN
    ("EXPLAIN SELECT * FROM t", READ),
    ("EXPLAIN VERBOSE SELECT * FROM t", READ),
    ("EXPLAIN (COSTS off) SELECT 1", READ),
    ("EXPLAIN ANALYZE SELECT * FROM t", READ),
    ("EXPLAIN (ANALYZE, BUFFERS) SELECT 1", READ),
    ("EXPLAIN DELETE FROM t", READ),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", READ),
    ("EXPLAIN SELECT nextval('s')", READ),
    ("EXPLAIN ANALYZE DELETE FROM t", WRITE),
    ("EXPLAIN ANALYSE VERBOSE UPDATE t SET a = 1", WRITE),
    ("EXPLAIN (ANALYZE, FORMAT json) INSERT INTO t VALUES (1)", WRITE),
    ("EXPLAIN (ANALYZE true) UPDATE t SET a = 1", WRITE),
    ("EXPLAIN ANALYZE SELECT nextval('s')", WFN),
    ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", LOCKING),
    ("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", DDL),
    ("EXPLAIN BEGIN", UNKNOWN),
    ("EXPLAIN", PARSE),
    // ---- COPY
    ("COPY t TO STDOUT", READ),
    ("COPY t (a, b) TO STDOUT WITH (FORMAT csv)", READ),
    ("COPY (SELECT * FROM t WHERE a > 1) TO STDOUT", READ),
    ("COPY t FROM STDIN", WRITE),
    ("copy pgbench_accounts from stdin with (freeze on)", WRITE),
    ("COPY t (a, b) FROM '/tmp/x.csv' WITH (FORMAT csv)", WRITE),
    ("COPY t TO '/tmp/out.csv'", WRITE),
    ("COPY t TO PROGRAM 'gzip > /tmp/x.gz'", WRITE),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", WRITE),
    ("COPY (SELECT nextval('s')) TO STDOUT", WFN),
    ("COPY t", PARSE),
    // ---- DECLARE / cursors
    ("DECLARE c CURSOR FOR SELECT * FROM t", READ),
    ("DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1", READ),
    ("DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", LOCKING),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", pin(Reason::SqlPrepare)),
    ("DECLARE c BINARY SCROLL CURSOR WITH HOLD FOR SELECT * FROM t", pin(Reason::SqlPrepare)),
    ("FETCH 10 FROM c", TXN),
    ("MOVE FORWARD 5 IN c", TXN),
    ("CLOSE c", TXN),
    ("CLOSE ALL", TXN),
    // ---- writes
    ("INSERT INTO t VALUES (1)", WRITE),
    ("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);", WRITE),
    ("UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 5432;", WRITE),
    ("UPDATE pgbench_tellers SET tbalance = tbalance + 10 WHERE tid = 3;", WRITE),
    ("DELETE FROM t WHERE a = 1", WRITE),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", WRITE),
    ("insert into t select * from u", WRITE),
    ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", WRITE),
    ("INSERT INTO t VALUES (1) RETURNING *", WRITE),
    ("TRUNCATE t", WRITE),
    ("truncate table pgbench_accounts, pgbench_branches", WRITE),
    ("CALL proc(1)", WRITE),
    ("DO $$ BEGIN PERFORM 1; END $$", WRITE),
    ("DO LANGUAGE plpgsql $body$ BEGIN RAISE NOTICE 'x'; END $body$", WRITE),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", WRITE),
    ("VACUUM ANALYZE pgbench_branches", WRITE),
    ("ANALYZE t", WRITE),
    ("CLUSTER t USING idx", WRITE),
    ("REINDEX TABLE t", WRITE),
    ("REFRESH MATERIALIZED VIEW mv", WRITE),
    ("GRANT SELECT ON t TO bob", WRITE),
    ("REVOKE ALL ON t FROM bob", WRITE),
    ("COMMENT ON TABLE t IS 'x'", WRITE),
    ("SECURITY LABEL ON TABLE t IS 'x'", WRITE),
    ("CHECKPOINT", WRITE),
    ("NOTIFY ch, 'payload'", WRITE),
    ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", WRITE),
    ("WITH x AS (SELECT 1) UPDATE t SET a = 1", WRITE),
    ("WITH x AS (SELECT 1) DELETE FROM t", WRITE),
    // ---- DDL
    ("CREATE TABLE t (a int)", DDL),
    ("create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))", DDL),
    ("CREATE INDEX i ON t (a)", DDL),
    ("CREATE UNIQUE INDEX CONCURRENTLY i2 ON t (b)", DDL),
    ("CREATE VIEW v AS SELECT 1", DDL),
    ("CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql", DDL),
    ("CREATE TABLE t2 AS SELECT * FROM t", DDL),
    ("CREATE UNLOGGED TABLE u (a int)", DDL),
    ("CREATE SEQUENCE s", DDL),
    ("CREATE EXTENSION pg_trgm", DDL),
    ("CREATE TABLE IF NOT EXISTS temp_stats (a int)", DDL),
    ("ALTER TABLE t ADD COLUMN b int", DDL),
    ("alter table pgbench_branches add primary key (bid)", DDL),
    ("ALTER SYSTEM SET work_mem = '64MB'", DDL),
    ("DROP TABLE IF EXISTS t", DDL),
    ("drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers", DDL),
    ("IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public", DDL),
    // ---- reads that write
    ("SELECT * FROM t FOR UPDATE", LOCKING),
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED", LOCKING),
    ("SELECT * FROM t FOR NO KEY UPDATE", LOCKING),
    ("SELECT * FROM t FOR SHARE", LOCKING),
    ("SELECT * FROM t FOR KEY SHARE NOWAIT", LOCKING),
    ("SELECT * FROM t FOR UPDATE OF t", LOCKING),
    ("select * from t for update", LOCKING),
    ("SELECT * FROM (SELECT * FROM t FOR UPDATE) s", LOCKING),
    ("WITH d AS (DELETE FROM t WHERE a < 0 RETURNING *) SELECT count(*) FROM d", MCTE),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i", MCTE),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u", MCTE),
    ("WITH a AS (SELECT 1), m AS (DELETE FROM t RETURNING *) SELECT * FROM a", MCTE),
    ("SELECT nextval('s')", WFN),
    ("SELECT NEXTVAL('s')", WFN),
    ("SELECT pg_catalog.nextval('s')", WFN),
    ("SELECT id, nextval('s') FROM t", WFN),
    ("SELECT setval('s', 10)", WFN),
    ("SELECT currval('s')", WFN),
    ("SELECT lastval()", WFN),
    ("VALUES (nextval('s'))", WFN),
    ("SELECT pg_advisory_xact_lock(1)", WFN),
    ("SELECT pg_try_advisory_xact_lock(1)", WFN),
    ("SELECT pg_advisory_unlock(1)", WFN),
    ("SELECT pg_notify('ch', 'x')", WFN),
    ("SELECT txid_current()", WFN),
    ("SELECT pg_current_xact_id()", WFN),
    ("SELECT pg_current_wal_lsn()", WFN),
    ("SELECT pg_switch_wal()", WFN),
    ("SELECT pg_create_restore_point('x')", WFN),
    ("SELECT lo_create(0)", WFN),
    ("SELECT lo_import('/tmp/x')", WFN),
    ("SELECT lo_unlink(16400)", WFN),
    ("SELECT lo_put(16400, 0, 'x')", WFN),
    ("SELECT dblink_exec('conn', 'DELETE FROM t')", WFN),
    ("SELECT pg_terminate_backend(123)", WFN),
    ("SELECT pg_cancel_backend(123)", WFN),
    ("SELECT pg_reload_conf()", WFN),
    ("SELECT pg_rotate_logfile()", WFN),
    ("SELECT pg_promote()", WFN),
    ("SELECT pg_replication_origin_create('x')", WFN),
    ("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", WFN),
    ("SELECT my_writer()", WFN),
    ("SELECT app.My_Writer(1)", WFN),
    ("SELECT lower_but_writes('x')", WFN),
    ("SELECT some_user_function(1)", WFN),
    ("SELECT public.lower('x')", WFN),
    ("SELECT \"Count\"(*) FROM t", WFN),
    ("SELECT * FROM my_set_returning_func()", WFN),
    ("SELECT * INTO t2 FROM t", w(Reason::SelectInto)),
    ("SELECT a INTO TABLE t2 FROM t", w(Reason::SelectInto)),
    ("SELECT * INTO UNLOGGED t2 FROM t", w(Reason::SelectInto)),
    // ---- pins
    ("SELECT * INTO TEMP t2 FROM t", pin(Reason::TempTable)),
    ("SELECT * INTO pg_temp.t2 FROM t", pin(Reason::TempTable)),
    ("SELECT pg_advisory_lock(1)", pin(Reason::AdvisoryLock)),
    ("SELECT pg_try_advisory_lock(1, 2)", pin(Reason::AdvisoryLock)),
    ("SELECT pg_advisory_lock_shared(1)", pin(Reason::AdvisoryLock)),
    ("SELECT pg_catalog.pg_advisory_lock(42)", pin(Reason::AdvisoryLock)),
    ("SELECT set_config('search_path', 'a', false)", pin(Reason::Session)),
    ("CREATE TEMP TABLE tmp (a int)", pin(Reason::TempTable)),
    ("CREATE TEMPORARY TABLE tmp AS SELECT 1", pin(Reason::TempTable)),
    ("create temp table tmp as select * from t", pin(Reason::TempTable)),
    ("CREATE GLOBAL TEMPORARY TABLE x (a int)", pin(Reason::TempTable)),
    ("CREATE TEMP VIEW v AS SELECT 1", pin(Reason::TempTable)),
    ("CREATE OR REPLACE TEMP VIEW v AS SELECT 1", pin(Reason::TempTable)),
    ("CREATE TEMP SEQUENCE s", pin(Reason::TempTable)),
    ("CREATE TABLE pg_temp.x (a int)", pin(Reason::TempTable)),
    ("LISTEN ch", pin(Reason::Listen)),
    ("UNLISTEN *", pin(Reason::Listen)),
    ("UNLISTEN ch", pin(Reason::Listen)),
    ("PREPARE q AS SELECT 1", pin(Reason::SqlPrepare)),
    ("PREPARE q (int) AS SELECT $1", pin(Reason::SqlPrepare)),
    ("EXECUTE q", pin(Reason::SqlPrepare)),
    ("EXECUTE q (1)", pin(Reason::SqlPrepare)),
    ("DEALLOCATE q", pin(Reason::SqlPrepare)),
    ("DEALLOCATE PREPARE ALL", pin(Reason::SqlPrepare)),
    // ---- transactions
    ("BEGIN", BEGIN_RW),
    ("begin;", BEGIN_RW),
    ("BEGIN WORK", BEGIN_RW),
    ("BEGIN TRANSACTION", BEGIN_RW),
    ("BEGIN READ ONLY", BEGIN_RO),
    ("BEGIN TRANSACTION READ ONLY", BEGIN_RO),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE", BEGIN_RO),
    ("BEGIN READ WRITE", BEGIN_RW),
    ("BEGIN ISOLATION LEVEL SERIALIZABLE", BEGIN_RW),
    ("BEGIN READ ONLY, READ WRITE", BEGIN_RW),
    ("START TRANSACTION", BEGIN_RW),
    // A hot standby refuses serializable transactions, read-only ones too.
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", BEGIN_RW),
    ("BEGIN READ ONLY ISOLATION LEVEL SERIALIZABLE DEFERRABLE", BEGIN_RW),
    ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", BEGIN_RO),
    ("start transaction read only not deferrable", BEGIN_RO),
    ("START TRANSACTION ISOLATION LEVEL READ COMMITTED READ WRITE", BEGIN_RW),
    ("BEGIN ISOLATION LEVEL BOGUS", PARSE),
    ("START", PARSE),
    ("COMMIT", TXN),
    ("commit;", TXN),
    ("END", TXN),
    ("END TRANSACTION", TXN),
    ("ROLLBACK", TXN),
    ("ABORT", TXN),
    ("COMMIT AND CHAIN", TXN),
    ("SAVEPOINT sp", TXN),
    ("RELEASE SAVEPOINT sp", TXN),
    ("RELEASE sp", TXN),
    ("ROLLBACK TO SAVEPOINT sp", TXN),
    ("ROLLBACK TO sp", TXN),
    ("PREPARE TRANSACTION 'gx'", TXN),
    ("COMMIT PREPARED 'gx'", w(Reason::Transaction)),
    ("ROLLBACK PREPARED 'gx'", w(Reason::Transaction)),
    // The transaction's own mode: with the transaction, else the primary (a standby refuses
    // read-write and serializable modes even outside a transaction block).
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", w(Reason::Transaction)),
    ("SET TRANSACTION READ ONLY", w(Reason::Transaction)),
    ("SET transaction_read_only = off", w(Reason::Transaction)),
    ("SET SESSION transaction_isolation TO 'serializable'", w(Reason::Transaction)),
    ("SET LOCAL transaction_deferrable = on", w(Reason::Transaction)),
    ("BEGIN READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", w(Reason::Transaction)),
    ("SET CONSTRAINTS ALL DEFERRED", TXN),
    ("SET LOCAL statement_timeout = '5s'", TXN),
    ("SET LOCAL search_path TO a", TXN),
    ("SET CONSTRAINTS ALL DEFERRED", TXN),
    // ---- session state
    ("SET search_path TO a,b", SESSION),
    ("SET search_path = public", SESSION),
    ("SET statement_timeout = 5000", SESSION),
    ("set application_name = 'x'", SESSION),
    ("SET SESSION work_mem = '64MB'", SESSION),
    ("SET TIME ZONE 'UTC'", SESSION),
    ("SET TIME ZONE LOCAL", SESSION),
    ("SET timezone TO 'Europe/Paris'", SESSION),
    ("SET NAMES 'UTF8'", SESSION),
    ("SET ROLE admin", SESSION),
    ("SET ROLE NONE", SESSION),
    ("SET SESSION AUTHORIZATION bob", SESSION),
    ("SET SESSION AUTHORIZATION DEFAULT", SESSION),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", SESSION),
    ("SET client_encoding TO DEFAULT", SESSION),
    ("SET datestyle = ISO, MDY", SESSION),
    ("SET \"my.setting\" = 'x'", SESSION),
    ("SET my.custom = 1", SESSION),
    ("SET extra_float_digits = 3", SESSION),
    ("RESET search_path", SESSION),
    ("RESET ALL", SESSION),
    ("RESET ROLE", SESSION),
    ("RESET SESSION AUTHORIZATION", SESSION),
    ("RESET TIME ZONE", SESSION),
    ("DISCARD ALL", SESSION),
    ("DISCARD PLANS", SESSION),
    ("DISCARD SEQUENCES", SESSION),
    ("DISCARD TEMP", SESSION),
    ("SET work_mem", PARSE),
    ("SET = 1", PARSE),
    // ---- proxy route
    ("SET switchyard.route = primary", route(RouteOverride::Primary)),
    ("SET switchyard.route TO 'replica'", route(RouteOverride::Replica)),
    ("SET switchyard.route = 'auto'", route(RouteOverride::Auto)),
    ("set SWITCHYARD.ROUTE to Primary;", route(RouteOverride::Primary)),
    ("SET SESSION switchyard.route = replica", route(RouteOverride::Replica)),
    ("SET \"switchyard.route\" = 'primary'", route(RouteOverride::Primary)),
    ("SET switchyard.route TO DEFAULT", route(RouteOverride::Auto)),
    ("RESET switchyard.route", route(RouteOverride::Auto)),
    ("SET switchyard.route = 'sideways'", UNKNOWN),
    ("SET switchyard.route = primary, replica", UNKNOWN),
    ("SET LOCAL switchyard.route = primary", UNKNOWN),
    // ---- multi-statement strings
    ("SELECT 1; SELECT 2", READ),
    ("SELECT 'a;b'; SELECT 2;", READ),
    ("BEGIN; UPDATE t SET a = 1; COMMIT", w(Reason::Transaction)),
    ("BEGIN READ ONLY; SELECT 1; COMMIT;", w(Reason::Transaction)),
    ("SET search_path TO a; SELECT 1", SESSION),
    ("SELECT 1; SET x = 1", SESSION),
    ("SET a = 1; SET b = 2", SESSION),
    ("SELECT 1; INSERT INTO t VALUES (1)", WRITE),
    ("SELECT 1; LISTEN ch", pin(Reason::Listen)),
    ("INSERT INTO t VALUES (1); CREATE TEMP TABLE x (a int)", pin(Reason::TempTable)),
    ("SELECT 1; SELECT nextval('s')", WFN),
    ("SET LOCAL a = 1; SELECT 1", w(Reason::Transaction)),
    ("SET switchyard.route = primary; SELECT 1", UNKNOWN),
    ("SELECT 1; this is not sql", PARSE),
    ("UPDATE t SET a = 1; DELETE FROM u", WRITE),
    // ---- comments and hints (the hint never changes the intent)
    ("/* switchyard: primary */ SELECT 1", READ),
    ("-- switchyard: replica\nUPDATE t SET a = 1", WRITE),
    ("/* app: web */ -- another\nSELECT 1", READ),
    ("/* nested /* comment */ ok */ SELECT 1", READ),
    // ---- lexical traps (standard_conforming_strings = on)
    ("SELECT 'a\\'; DELETE FROM t; --'", WRITE),
    ("SELECT E'a\\'; DELETE FROM t; --'", READ),
    ("SELECT $x$ ; DELETE FROM t $x$", READ),
    ("SELECT 1 /* /* */ ; DELETE FROM t */", READ),
    ("SELECT pg_catalog.nextval /* c */ ('s')", WFN),
    ("SELECT \"pg_catalog\".\"nextval\"('s')", WFN),
    ("SELECT t.x FROM t, LATERAL my_func(t.x) f", WFN),
    // ---- empty
    ("", EMPTY),
    ("   \n\t", EMPTY),
    (";", EMPTY),
    (";;", EMPTY),
    ("-- only a comment", EMPTY),
    ("/* c */ ;", EMPTY),
    // ---- garbage / unparsable
    ("SELEC * FROM t", PARSE),
    ("hello world", PARSE),
    ("SELECT * FROM (", PARSE),
    ("SELECT 'unterminated", PARSE),
    ("SELECT count(* FROM t", PARSE),
    ("WITH x AS (SELECT 1", PARSE),
    ("}{", PARSE),
    ("SHOW", PARSE),
    ("DISCARD", PARSE),
    ("KILL 123", UNKNOWN),
];

fn got(sql: &str) -> Want {
    let c = classify(sql, &extra());
    (c.intent, c.reason)
}

#[test]
fn corpus_is_large_enough() {
    assert!(CORPUS.len() >= 170, "corpus has {} entries", CORPUS.len());
}

#[test]
fn corpus() {
    let mut failures = Vec::new();
    for (sql, want) in CORPUS {
        let g = got(sql);
        if g != *want {
            failures.push(format!("{sql:?}\n    want {want:?}\n    got  {g:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cheap_and_full_paths_agree() {
    let extra = extra();
    let mut answered = 0;
    for (sql, _) in CORPUS {
        let Some(toks) = significant_tokens(sql) else {
            continue;
        };
        if let Some(cheap) = cheap_path(&toks) {
            answered += 1;
            assert_eq!(cheap, full_path(&toks, &extra), "{sql}");
        }
    }
    // pgbench's statements and the plain writes must take the cheap path.
    assert!(answered >= 60, "cheap path answered only {answered}");
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 5432;",
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);",
        "CREATE TEMP TABLE x (a int)",
    ] {
        let toks = significant_tokens(sql).unwrap();
        assert!(cheap_path(&toks).is_some(), "{sql}");
    }
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT now()",
        "SELECT * FROM t FOR UPDATE",
        "BEGIN",
    ] {
        let toks = significant_tokens(sql).unwrap();
        assert!(cheap_path(&toks).is_none(), "{sql}");
    }
}

#[test]
fn cheap_select_skips_the_parse_by_design() {
    // A SELECT with no `(`, FOR or INTO cannot write; a malformed one is answered Read and the
    // server reports the syntax error. With a `(` it goes through the parser.
    let toks = significant_tokens("SELECT FROM WHERE").unwrap();
    assert_eq!(cheap_path(&toks), Some(cls(Intent::Read, Reason::Read)));
    assert_eq!(
        got("SELECT lower(FROM WHERE"),
        (Intent::Write, Reason::ParseError)
    );
}

fn cls(intent: Intent, reason: Reason) -> Classification {
    Classification {
        intent,
        reason,
        hint: None,
    }
}

#[test]
fn unparsable_is_write_parse_error() {
    for sql in [
        "SELEC * FROM t",
        "hello world",
        "SELECT * FROM (",
        "SELECT 'unterminated",
        "SELECT count(* FROM t",
        "WITH x AS (SELECT 1",
        "SELECT \"unterminated",
        "/* unterminated comment SELECT 1",
        "SELECT $$unterminated",
        "EXPLAIN (ANALYZE SELECT 1",
    ] {
        assert_eq!(got(sql), (Intent::Write, Reason::ParseError), "{sql}");
    }
}

#[test]
fn unparsable_locking_and_cte_pick_better_reasons() {
    // sqlparser 0.64 rejects these valid statements; the intent stays Write.
    assert_eq!(got("SELECT * FROM t FOR NO KEY UPDATE"), LOCKING);
    assert_eq!(got("SELECT * FROM t FOR KEY SHARE"), LOCKING);
    assert_eq!(
        got("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d FOR NO KEY UPDATE"),
        MCTE
    );
    assert_eq!(got("SELECT nextval('s') FROM t FOR KEY SHARE"), LOCKING);
    assert_eq!(
        got("SELECT pg_advisory_lock(1) FROM t FOR KEY SHARE"),
        pin(Reason::AdvisoryLock)
    );
}

#[test]
fn hints_are_reported_but_do_not_change_intent() {
    let c = classify("/* switchyard: primary */ SELECT 1", &[]);
    assert_eq!(
        (c.intent, c.reason, c.hint),
        (Intent::Read, Reason::Read, Some(Hint::Primary))
    );
    let c = classify("-- switchyard: replica\nUPDATE t SET a = 1", &[]);
    assert_eq!((c.intent, c.hint), (Intent::Write, Some(Hint::Replica)));
    let c = classify("/* switchyard_route: replica */ SELECT nextval('s')", &[]);
    assert_eq!(
        (c.intent, c.reason, c.hint),
        (Intent::Write, Reason::WriteFunction, Some(Hint::Replica))
    );
    let c = classify("SELECT 1 /* switchyard: primary */", &[]);
    assert_eq!(c.hint, None);
    let c = classify("/* switchyard: replica */ SELECT 'unterminated", &[]);
    assert_eq!((c.intent, c.hint), (Intent::Write, Some(Hint::Replica)));
}

#[test]
fn extra_write_functions_override_the_safe_list() {
    assert_eq!(classify("SELECT lower('x')", &[]).intent, Intent::Read);
    let extra = vec!["LOWER".to_string()];
    let c = classify("SELECT pg_catalog.lower('x')", &extra);
    assert_eq!((c.intent, c.reason), (Intent::Write, Reason::WriteFunction));
}

#[test]
fn statement_level_entry_matches_single_statement_texts() {
    let extra = extra();
    for (sql, want) in CORPUS {
        let Some(toks) = significant_tokens(sql) else {
            continue;
        };
        let parts: Vec<_> = toks
            .split(|t| *t == sqlparser::tokenizer::Token::SemiColon)
            .filter(|s| !s.is_empty())
            .collect();
        if let [one] = parts.as_slice() {
            let c = classify_statement(one, &extra);
            assert_eq!((c.intent, c.reason), *want, "{sql}");
        }
    }
}

#[test]
fn cache_returns_the_same_answers() {
    let classifier = Classifier::new(ClassifierSettings {
        write_functions: extra(),
        cache_size: 64,
        dialect: super::Dialect::Postgres,
    });
    for _ in 0..3 {
        for (sql, want) in CORPUS {
            let c = classifier.classify(sql);
            assert_eq!((c.intent, c.reason), *want, "{sql}");
            assert_eq!(c, classify(sql, &extra()), "{sql}");
        }
    }
    let uncached = Classifier::new(ClassifierSettings {
        write_functions: extra(),
        cache_size: 0,
        dialect: super::Dialect::Postgres,
    });
    for (sql, want) in CORPUS {
        let c = uncached.classify(sql);
        assert_eq!((c.intent, c.reason), *want, "{sql}");
    }
    // Hints are part of the cached answer (the key is the exact text).
    let c = classifier.classify("/* switchyard: replica */ SELECT 1");
    assert_eq!(c.hint, Some(Hint::Replica));
    assert_eq!(
        classifier
            .classify("/* switchyard: replica */ SELECT 1")
            .hint,
        Some(Hint::Replica)
    );
    assert_eq!(classifier.classify("SELECT 1").hint, None);
}

#[test]
fn pgbench_simple_mode_literals_vary() {
    for aid in [1, 48213, 99999, 100000] {
        let sql = format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};");
        assert_eq!(got(&sql), READ);
        let sql = format!(
            "UPDATE pgbench_accounts SET abalance = abalance + {} WHERE aid = {aid};",
            -aid
        );
        assert_eq!(got(&sql), WRITE);
    }
}
