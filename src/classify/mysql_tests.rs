//! Corpus tests for the MySQL/MariaDB classifier: expected (Intent, Reason) per statement.

use super::mysql::{cheap_path, classify, classify_statement, full_path, significant_tokens};
use super::{
    Classification, Classifier, ClassifierSettings, Dialect, Hint, Intent, Reason, RouteOverride,
};

type Want = (Intent, Reason);

const READ: Want = (Intent::Read, Reason::Read);
const EMPTY: Want = (Intent::Read, Reason::Empty);
const TXN: Want = (Intent::TxnControl, Reason::Transaction);
const SESSION: Want = (Intent::SessionSet, Reason::Session);
const USERVAR: Want = (Intent::SessionSet, Reason::UserVariable);
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
const INTO: Want = w(Reason::SelectInto);
const PARSE: Want = w(Reason::ParseError);
const UNKNOWN: Want = w(Reason::Unknown);
const GLOBAL: Want = w(Reason::Session);
const PIN_VAR: Want = pin(Reason::UserVariable);
const PIN_LOCK: Want = pin(Reason::AdvisoryLock);
const PIN_TABLES: Want = pin(Reason::LockTables);

/// Extra writer configured in the corpus runs.
fn extra() -> Vec<String> {
    vec!["my_writer".to_string(), "lower_but_writes".to_string()]
}

/// A mysqldump file header and footer, as one multi-statement text.
const MYSQLDUMP_HEADER: &str = "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n/*!40101 SET @OLD_CHARACTER_SET_RESULTS=@@CHARACTER_SET_RESULTS */;\n/*!40101 SET @OLD_COLLATION_CONNECTION=@@COLLATION_CONNECTION */;\n/*!50503 SET NAMES utf8mb4 */;\n/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;\n/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n/*!40111 SET @OLD_SQL_NOTES=@@SQL_NOTES, SQL_NOTES=0 */;";

/// A mysqldump file footer.
const MYSQLDUMP_FOOTER: &str = "/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;\n/*!40014 SET UNIQUE_CHECKS=@OLD_UNIQUE_CHECKS */;\n/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;\n/*!40101 SET CHARACTER_SET_RESULTS=@OLD_CHARACTER_SET_RESULTS */;\n/*!40101 SET COLLATION_CONNECTION=@OLD_COLLATION_CONNECTION */;\n/*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;";

/// A mysqldump table section.
const MYSQLDUMP_TABLE: &str = "DROP TABLE IF EXISTS `t`;\n/*!40101 SET @saved_cs_client     = @@character_set_client */;\n/*!50503 SET character_set_client = utf8mb4 */;\nCREATE TABLE `t` (\n  `id` int NOT NULL AUTO_INCREMENT,\n  `name` varchar(20) DEFAULT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n/*!40101 SET character_set_client = @saved_cs_client */;\nLOCK TABLES `t` WRITE;\n/*!40000 ALTER TABLE `t` DISABLE KEYS */;\nINSERT INTO `t` VALUES (1,'a'),(2,'it\\'s');\n/*!40000 ALTER TABLE `t` ENABLE KEYS */;\nUNLOCK TABLES;";

/// MySQL Connector/J's connection setup query.
const CONNECTOR_J_SETUP: &str = "/* mysql-connector-java-8.0.33 (Revision: 7d6b0800528b6b25c68b52dc10d6c1c8429c100c) */SELECT  @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client, @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results, @@character_set_server AS character_set_server, @@collation_server AS collation_server, @@collation_connection AS collation_connection, @@init_connect AS init_connect, @@interactive_timeout AS interactive_timeout, @@license AS license, @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet, @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema, @@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout";

#[rustfmt::skip]
pub(super) const CORPUS: &[(&str, Want)] = &[
    // ---- plain reads
    ("SELECT 1", READ),
    ("select 1", READ),
    ("SELECT 1 FROM DUAL", READ),
    ("SELECT * FROM t WHERE id = 5", READ),
    ("SELECT a, b FROM t ORDER BY a LIMIT 10 OFFSET 5", READ),
    ("SELECT a FROM t LIMIT 5, 10", READ),
    ("SELECT `a`, `b` FROM `db`.`t` WHERE `c` = \"x\"", READ),
    ("SELECT * FROM t WHERE c = 'it\\'s' AND d = \"say \\\"hi\\\"\"", READ),
    ("SELECT * FROM t WHERE a IN (1, 2, 3)", READ),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", READ),
    ("SELECT * FROM (SELECT a FROM t) AS s", READ),
    ("SELECT * FROM t1 JOIN t2 USING (id)", READ),
    ("SELECT * FROM t1 STRAIGHT_JOIN t2 ON t1.id = t2.id", READ),
    ("SELECT * FROM t USE INDEX (idx_a) WHERE a = 1", READ),
    ("SELECT * FROM t FORCE INDEX (PRIMARY) WHERE id > 10", READ),
    ("SELECT * FROM t PARTITION (p0, p1)", READ),
    ("SELECT HIGH_PRIORITY SQL_NO_CACHE a FROM t", READ),
    ("SELECT /*!40001 SQL_NO_CACHE */ * FROM t", READ),
    ("SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM t", READ),
    ("SELECT a FROM t # trailing comment", READ),
    ("SELECT a FROM t -- trailing comment", READ),
    ("SELECT 1--1", READ),
    ("SELECT COUNT(*), SUM(a), AVG(b), MIN(c), MAX(d) FROM t GROUP BY e HAVING COUNT(*) > 1", READ),
    ("SELECT GROUP_CONCAT(DISTINCT a ORDER BY a SEPARATOR ',') FROM t", READ),
    ("SELECT CONCAT(first, ' ', last), CONCAT_WS('-', a, b), LOWER(x), UPPER(y) FROM users", READ),
    ("SELECT IFNULL(a, 0), COALESCE(b, c), NULLIF(d, 0), IF(e > 1, 'y', 'n') FROM t", READ),
    ("SELECT CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END FROM t", READ),
    ("SELECT NOW(), CURDATE(), CURTIME(), CURRENT_TIMESTAMP, UTC_TIMESTAMP()", READ),
    ("SELECT DATE_FORMAT(created, '%Y-%m-%d'), DATE_ADD(created, INTERVAL 1 DAY) FROM t", READ),
    ("SELECT UNIX_TIMESTAMP(), FROM_UNIXTIME(1700000000), STR_TO_DATE('2024-01-01', '%Y-%m-%d')", READ),
    ("SELECT DATEDIFF(a, b), TIMESTAMPDIFF(SECOND, a, b), YEAR(d), MONTH(d), DAY(d) FROM t", READ),
    ("SELECT ROUND(a, 2), FLOOR(b), CEIL(c), ABS(d), MOD(e, 3), RAND() FROM t", READ),
    ("SELECT MD5(a), SHA1(b), SHA2(c, 256), HEX(d), UNHEX(e) FROM t", READ),
    ("SELECT CAST(a AS DECIMAL(10,2)), CAST(b AS CHAR(20)), CONVERT(c USING utf8mb4) FROM t", READ),
    ("SELECT CAST(a AS UNSIGNED), CONVERT(b, SIGNED) FROM t", READ),
    ("SELECT JSON_EXTRACT(j, '$.a'), j->'$.b', j->>'$.c', JSON_UNQUOTE(JSON_EXTRACT(j, '$.d')) FROM t", READ),
    ("SELECT * FROM t WHERE JSON_CONTAINS(tags, '\"x\"')", READ),
    ("SELECT * FROM t WHERE MATCH(title, body) AGAINST ('mysql' IN BOOLEAN MODE)", READ),
    ("SELECT * FROM t WHERE name REGEXP '^a' OR name LIKE 'b%'", READ),
    ("SELECT SUBSTRING(a, 1, 3), LEFT(b, 2), RIGHT(c, 2), TRIM(d), REPLACE(e, 'x', 'y') FROM t", READ),
    ("SELECT INSERT('abcdef', 2, 3, 'X')", READ),
    ("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", READ),
    ("SELECT a, RANK() OVER w FROM t WINDOW w AS (ORDER BY a)", READ),
    ("SELECT VERSION(), DATABASE(), USER(), CURRENT_USER(), CONNECTION_ID()", READ),
    ("SELECT UUID(), UUID_SHORT(), INET_ATON('10.0.0.1'), SLEEP(0)", READ),
    ("SELECT @@version", READ),
    ("SELECT @@server_id, @@port, @@hostname", READ),
    ("SELECT @@session.sql_mode, @@global.read_only", READ),
    ("select @@version_comment limit 1", READ),
    ("SELECT @@max_allowed_packet,@@wait_timeout", READ),
    ("SELECT @@socket", READ),
    ("SELECT @@session.transaction_read_only", READ),
    ("SELECT @a, @b", READ),
    ("SELECT @'my var', @`other`", READ),
    ("SELECT * FROM t WHERE id = @id", READ),
    ("SELECT DATABASE(), USER();", READ),
    ("SELECT DATABASE()", READ),
    ("SELECT ST_AsText(geom), ST_Distance(a, b) FROM places", READ),
    ("SELECT a FROM t WHERE b = _utf8mb4'x' COLLATE utf8mb4_bin", READ),
    ("SELECT X'0A', 0x0A, b'01'", READ),
    ("(SELECT a FROM t1) UNION (SELECT a FROM t2) ORDER BY a", READ),
    ("SELECT a FROM t1 UNION ALL SELECT a FROM t2", READ),
    ("WITH x AS (SELECT 1 AS a) SELECT * FROM x", READ),
    ("WITH RECURSIVE r (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r", READ),
    ("TABLE t", READ),
    ("TABLE t ORDER BY a LIMIT 3", READ),
    ("VALUES ROW(1, 2), ROW(3, 4)", READ),
    ("SELECT 1; SELECT 2", READ),
    ("SELECT * FROM information_schema.tables WHERE table_schema = DATABASE()", READ),
    // ORM-generated reads
    ("SELECT `users`.* FROM `users` WHERE `users`.`id` = 1 LIMIT 1", READ),
    ("SELECT 1 AS one FROM `users` WHERE `users`.`email` = BINARY 'x' LIMIT 1", READ),
    ("SELECT `auth_user`.`id`, `auth_user`.`username` FROM `auth_user` WHERE `auth_user`.`username` = 'x' LIMIT 21", READ),
    ("select u1_0.id,u1_0.name from users u1_0 where u1_0.id=?", READ),
    ("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4)) AND c <=> NULL", READ),
    ("SELECT a, COUNT(*) FROM t GROUP BY a WITH ROLLUP", READ),
    ("SELECT * FROM JSON_TABLE('[1,2]', '$[*]' COLUMNS (x INT PATH '$')) AS jt", READ),
    ("SELECT * FROM (SELECT 1 AS a) AS d (x)", READ),
    // sysbench oltp
    ("SELECT c FROM sbtest1 WHERE id=?", READ),
    ("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?", READ),
    ("SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN ? AND ?", READ),
    ("SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", READ),
    ("SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c", READ),
    ("SELECT c FROM sbtest1 WHERE id=5012", READ),
    ("SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4980 AND 5079 ORDER BY c", READ),
    // client connection setup
    (CONNECTOR_J_SETUP, READ),
    // ---- SHOW / DESCRIBE / EXPLAIN / HELP
    ("SHOW DATABASES", READ),
    ("show tables", READ),
    ("SHOW FULL TABLES FROM db LIKE 'a%'", READ),
    ("SHOW CREATE TABLE `t`", READ),
    ("SHOW COLUMNS FROM t", READ),
    ("SHOW INDEX FROM t", READ),
    ("SHOW TABLE STATUS", READ),
    ("SHOW VARIABLES LIKE 'max_allowed_packet'", READ),
    ("SHOW SESSION VARIABLES WHERE Variable_name = 'sql_mode'", READ),
    ("SHOW GLOBAL STATUS LIKE 'Threads%'", READ),
    ("SHOW FULL PROCESSLIST", READ),
    ("SHOW GRANTS FOR CURRENT_USER()", READ),
    ("SHOW ENGINE INNODB STATUS", READ),
    ("SHOW MASTER STATUS", READ),
    ("SHOW REPLICA STATUS", READ),
    ("SHOW CHARACTER SET", READ),
    ("SHOW WARNINGS", GLOBAL),
    ("SHOW ERRORS LIMIT 5", GLOBAL),
    ("SHOW COUNT(*) WARNINGS", GLOBAL),
    ("SHOW PROFILES", GLOBAL),
    ("DESCRIBE t", READ),
    ("DESC t", READ),
    ("DESC db.t id", READ),
    ("EXPLAIN t", READ),
    ("EXPLAIN SELECT * FROM t WHERE a = 1", READ),
    ("EXPLAIN FORMAT=JSON SELECT * FROM t", READ),
    ("EXPLAIN FORMAT=TREE SELECT * FROM t", READ),
    ("EXPLAIN UPDATE t SET a = 1", READ),
    ("EXPLAIN DELETE FROM t WHERE id = 1", READ),
    ("EXPLAIN INSERT INTO t VALUES (1)", READ),
    ("DESCRIBE SELECT * FROM t", READ),
    ("EXPLAIN SELECT my_func(a) FROM t", WFN),
    ("EXPLAIN ANALYZE SELECT * FROM t", READ),
    ("EXPLAIN ANALYZE UPDATE t SET a = 1", WRITE),
    ("EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", LOCKING),
    ("ANALYZE SELECT * FROM t", READ),
    ("ANALYZE FORMAT=JSON DELETE FROM t", WRITE),
    ("EXPLAIN FORMAT=JSON INTO @plan SELECT * FROM t", PIN_VAR),
    ("EXPLAIN FOR CONNECTION 12", GLOBAL),
    ("HELP 'contents'", READ),
    // ---- locking reads, INTO, assignments
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE", LOCKING),
    ("SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED", LOCKING),
    ("SELECT * FROM t FOR SHARE NOWAIT", LOCKING),
    ("SELECT * FROM t LOCK IN SHARE MODE", LOCKING),
    ("SELECT * FROM t WHERE a = 1 FOR UPDATE OF t", LOCKING),
    ("SELECT * INTO OUTFILE '/tmp/t.csv' FROM t", INTO),
    ("SELECT a FROM t INTO OUTFILE '/tmp/t.csv' FIELDS TERMINATED BY ','", INTO),
    ("SELECT a INTO DUMPFILE '/tmp/a' FROM t LIMIT 1", INTO),
    ("SELECT a INTO @x FROM t LIMIT 1", PIN_VAR),
    ("SELECT a, b FROM t WHERE id = 1 INTO @x, @y", PIN_VAR),
    ("SELECT a INTO @x FROM t WHERE id = 1 FOR UPDATE", PIN_VAR),
    ("SELECT @x := 1", PIN_VAR),
    ("SELECT @rownum := @rownum + 1 AS n, a FROM t", PIN_VAR),
    // ---- functions that write or need the primary
    ("SELECT LAST_INSERT_ID()", WFN),
    ("SELECT last_insert_id()", WFN),
    ("SELECT FOUND_ROWS()", WFN),
    ("SELECT ROW_COUNT()", WFN),
    ("SELECT @@last_insert_id", WFN),
    ("SELECT @@identity", WFN),
    ("SELECT @@session.last_gtid", WFN),
    ("SELECT @@warning_count, @@error_count", WFN),
    ("SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 10", WFN),
    ("SELECT GET_LOCK('job', 10)", PIN_LOCK),
    ("SELECT get_lock('job', 0), a FROM t", PIN_LOCK),
    ("SELECT RELEASE_LOCK('job')", WFN),
    ("SELECT RELEASE_ALL_LOCKS()", WFN),
    ("SELECT IS_FREE_LOCK('job'), IS_USED_LOCK('job')", WFN),
    ("SELECT NEXTVAL(seq)", WFN),
    ("SELECT NEXT VALUE FOR seq", WFN),
    ("SELECT PREVIOUS VALUE FOR seq", WFN),
    ("SELECT SETVAL(seq, 100)", WFN),
    ("SELECT LASTVAL(seq)", WFN),
    ("SELECT seq.nextval", WFN),
    ("SELECT my_func(a) FROM t", WFN),
    ("SELECT db.my_func(a) FROM t", WFN),
    ("SELECT `count`(a) FROM t", WFN),
    ("SELECT my_writer()", WFN),
    ("SELECT LOWER_BUT_WRITES(a) FROM t", WFN),
    ("SELECT a FROM t WHERE b = (SELECT my_func(1))", WFN),
    ("SELECT LOAD_FILE('/etc/hosts')", WFN),
    ("SELECT MASTER_POS_WAIT('log.000001', 4)", WFN),
    // ---- writes
    ("INSERT INTO t (a) VALUES (1)", WRITE),
    ("insert into t values (1, 'x')", WRITE),
    ("INSERT INTO t SET a = 1, b = 2", WRITE),
    ("INSERT INTO t (a) VALUES (1) ON DUPLICATE KEY UPDATE a = VALUES(a) + 1", WRITE),
    ("INSERT IGNORE INTO t SELECT * FROM u", WRITE),
    ("REPLACE INTO t (id, a) VALUES (1, 2)", WRITE),
    ("UPDATE t SET a = a + 1 WHERE id = 3", WRITE),
    ("UPDATE t1 JOIN t2 ON t1.id = t2.id SET t1.a = t2.a", WRITE),
    ("UPDATE t SET a = 1 ORDER BY id LIMIT 10", WRITE),
    ("DELETE FROM t WHERE id = 1", WRITE),
    ("DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id", WRITE),
    ("WITH old AS (SELECT id FROM t WHERE a < 0) DELETE FROM t WHERE id IN (SELECT id FROM old)", WRITE),
    ("WITH c AS (SELECT 1 AS v) UPDATE t SET a = (SELECT v FROM c)", WRITE),
    ("UPDATE sbtest1 SET k=k+1 WHERE id=?", WRITE),
    ("UPDATE sbtest1 SET c=? WHERE id=?", WRITE),
    ("DELETE FROM sbtest1 WHERE id=?", WRITE),
    ("INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)", WRITE),
    ("LOAD DATA INFILE '/tmp/t.csv' INTO TABLE t", WRITE),
    ("LOAD DATA LOCAL INFILE '/tmp/t.csv' INTO TABLE t FIELDS TERMINATED BY ','", w(Reason::LocalInfile)),
    ("LOAD DATA LOW_PRIORITY LOCAL INFILE 'x' REPLACE INTO TABLE t", w(Reason::LocalInfile)),
    ("LOAD XML LOCAL INFILE 'x.xml' INTO TABLE t", w(Reason::LocalInfile)),
    ("CALL my_proc(1, @out)", w(Reason::StoredProcedure)),
    ("CALL db.refresh()", w(Reason::StoredProcedure)),
    ("DO SLEEP(1)", WRITE),
    ("DO GET_LOCK('x', 10)", PIN_LOCK),
    ("TRUNCATE TABLE t", WRITE),
    ("TRUNCATE t", WRITE),
    ("GRANT SELECT ON db.* TO 'app'@'%'", WRITE),
    ("REVOKE ALL ON *.* FROM 'app'@'%'", WRITE),
    ("OPTIMIZE TABLE t", WRITE),
    ("ANALYZE TABLE t", WRITE),
    ("ANALYZE NO_WRITE_TO_BINLOG TABLE t", WRITE),
    ("REPAIR TABLE t", WRITE),
    ("CHECK TABLE t", WRITE),
    ("CHECKSUM TABLE t", WRITE),
    ("FLUSH PRIVILEGES", WRITE),
    ("FLUSH LOGS", WRITE),
    ("KILL 123", WRITE),
    ("KILL QUERY 123", WRITE),
    ("XA START 'x'", w(Reason::Transaction)),
    ("XA END 'x'", w(Reason::Transaction)),
    ("XA COMMIT 'x'", w(Reason::Transaction)),
    ("HANDLER t OPEN", GLOBAL),
    ("HANDLER t READ FIRST", GLOBAL),
    ("INSTALL PLUGIN x SONAME 'x.so'", WRITE),
    ("UNINSTALL PLUGIN x", WRITE),
    ("CHANGE MASTER TO MASTER_HOST = 'h'", WRITE),
    ("CHANGE REPLICATION SOURCE TO SOURCE_HOST = 'h'", WRITE),
    ("START SLAVE", WRITE),
    ("START REPLICA", WRITE),
    ("STOP REPLICA", WRITE),
    ("PURGE BINARY LOGS BEFORE '2024-01-01'", WRITE),
    ("RESET MASTER", WRITE),
    ("SHUTDOWN", WRITE),
    ("BINLOG 'AAAA'", WRITE),
    ("GET DIAGNOSTICS @n = NUMBER", PIN_VAR),
    ("GET DIAGNOSTICS CONDITION 1 @e = MYSQL_ERRNO", PIN_VAR),
    ("BEGIN NOT ATOMIC SELECT 1; END", w(Reason::StoredProcedure)),
    // ---- DDL
    ("CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, c VARCHAR(10)) ENGINE=InnoDB", DDL),
    ("CREATE TABLE sbtest1(id INTEGER NOT NULL AUTO_INCREMENT, k INTEGER DEFAULT '0' NOT NULL, c CHAR(120) DEFAULT '' NOT NULL, pad CHAR(60) DEFAULT '' NOT NULL, PRIMARY KEY (id)) /*! ENGINE = innodb */", DDL),
    ("CREATE INDEX k_1 ON sbtest1(k)", DDL),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", DDL),
    ("CREATE DATABASE IF NOT EXISTS db", DDL),
    ("CREATE USER 'u'@'%' IDENTIFIED BY 'p'", DDL),
    ("ALTER TABLE t ADD COLUMN b INT AFTER a", DDL),
    ("DROP TABLE IF EXISTS t", DDL),
    ("DROP DATABASE db", DDL),
    ("RENAME TABLE a TO b", DDL),
    ("/*!40000 ALTER TABLE `t` DISABLE KEYS */", DDL),
    // ---- pins
    ("CREATE TEMPORARY TABLE tmp (a INT)", pin(Reason::TempTable)),
    ("CREATE TEMPORARY TABLE tmp SELECT * FROM t", pin(Reason::TempTable)),
    ("CREATE OR REPLACE TEMPORARY TABLE tmp (a INT)", pin(Reason::TempTable)),
    ("DROP TEMPORARY TABLE IF EXISTS tmp", pin(Reason::TempTable)),
    ("LOCK TABLES t READ", PIN_TABLES),
    ("LOCK TABLES t1 WRITE, t2 READ LOCAL", PIN_TABLES),
    ("LOCK TABLE t WRITE", PIN_TABLES),
    ("UNLOCK TABLES", PIN_TABLES),
    ("FLUSH TABLES WITH READ LOCK", PIN_TABLES),
    ("FLUSH TABLES t FOR EXPORT", PIN_TABLES),
    ("LOCK INSTANCE FOR BACKUP", PIN_TABLES),
    ("BACKUP STAGE START", PIN_TABLES),
    ("PREPARE s FROM 'SELECT ?'", pin(Reason::SqlPrepare)),
    ("EXECUTE s USING @a", pin(Reason::SqlPrepare)),
    ("DEALLOCATE PREPARE s", pin(Reason::SqlPrepare)),
    ("DROP PREPARE s", pin(Reason::SqlPrepare)),
    // ---- transactions
    ("BEGIN", BEGIN_RW),
    ("begin work", BEGIN_RW),
    ("START TRANSACTION", BEGIN_RW),
    ("START TRANSACTION READ ONLY", BEGIN_RO),
    ("START TRANSACTION READ WRITE", BEGIN_RW),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT", BEGIN_RW),
    ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", BEGIN_RO),
    ("START TRANSACTION READ ONLY, READ WRITE", BEGIN_RW),
    ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", PARSE),
    ("COMMIT", TXN),
    ("COMMIT WORK AND NO CHAIN NO RELEASE", TXN),
    ("ROLLBACK", TXN),
    ("ROLLBACK WORK AND CHAIN", TXN),
    ("ROLLBACK TO SAVEPOINT sp1", TXN),
    ("ROLLBACK TO sp1", TXN),
    ("SAVEPOINT sp1", TXN),
    ("RELEASE SAVEPOINT sp1", TXN),
    ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", TXN),
    ("SET TRANSACTION READ ONLY", TXN),
    ("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ", SESSION),
    ("SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED", GLOBAL),
    ("BEGIN; UPDATE t SET a = 1; COMMIT", w(Reason::Transaction)),
    // ---- session state
    ("USE db", SESSION),
    ("use `my-db`", SESSION),
    ("SET NAMES utf8mb4", SESSION),
    ("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_ci'", SESSION),
    ("SET CHARACTER SET utf8", SESSION),
    ("SET CHARSET DEFAULT", SESSION),
    ("SET character_set_results = NULL", SESSION),
    ("SET autocommit = 0", SESSION),
    ("SET autocommit=1", SESSION),
    ("SET SESSION sql_mode = 'STRICT_TRANS_TABLES'", SESSION),
    ("SET LOCAL wait_timeout = 100", SESSION),
    ("SET @@session.time_zone = '+00:00'", SESSION),
    ("SET @@time_zone = 'UTC'", SESSION),
    ("SET time_zone = '+08:00'", SESSION),
    ("SET sql_mode = CONCAT(@@sql_mode, ',NO_ZERO_DATE')", SESSION),
    ("SET SESSION max_execution_time = 1000, SESSION sql_safe_updates = 1", SESSION),
    ("SET validate_password.length = 8", SESSION),
    ("SET ROLE ALL", SESSION),
    ("/*!40101 SET NAMES utf8 */", SESSION),
    ("/*!40103 SET TIME_ZONE='+00:00' */", SESSION),
    ("SET @x = 1", USERVAR),
    ("SET @name = 'foo'", USERVAR),
    ("SET @a = 42", USERVAR),
    ("SET @b = 'foo'", USERVAR),
    ("SET @x := 5", USERVAR),
    ("SET @y = @x + 1", USERVAR),
    ("SET @s = CONCAT('a', 'b')", USERVAR),
    ("SET @a = 1, @b = 'two'", USERVAR),
    ("SET @'my var' = 1", USERVAR),
    ("SET @rownum = 0, sql_mode = ''", SESSION),
    ("/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */", USERVAR),
    ("/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */", SESSION),
    ("/*!40101 SET character_set_client = @saved_cs_client */", SESSION),
    ("SET @@SESSION.SQL_LOG_BIN= 0", SESSION),
    (MYSQLDUMP_HEADER, SESSION),
    (MYSQLDUMP_FOOTER, SESSION),
    ("/*!50717 SELECT COUNT(*) INTO @rocksdb_has_p_s_session_variables FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'performance_schema' AND TABLE_NAME = 'session_variables' */", PIN_VAR),
    ("/*!50717 SET @rocksdb_get_is_supported = IF (@rocksdb_has_p_s_session_variables, 'SELECT COUNT(*) INTO @rocksdb_is_supported FROM performance_schema.session_variables WHERE VARIABLE_NAME=\\'rocksdb_bulk_load\\'', 'SELECT 0') */", USERVAR),
    ("/*!50717 PREPARE s FROM @rocksdb_get_is_supported */; /*!50717 EXECUTE s */; /*!50717 DEALLOCATE PREPARE s */", pin(Reason::SqlPrepare)),
    ("/*!50001 CREATE ALGORITHM=UNDEFINED */\n/*!50013 DEFINER=`root`@`localhost` SQL SECURITY DEFINER */\n/*!50001 VIEW `v` AS select 1 AS `a` */", DDL),
    ("SET @x = (SELECT MAX(id) FROM t)", PIN_VAR),
    ("SET @t = NOW()", PIN_VAR),
    ("SET @t = CURRENT_TIMESTAMP", PIN_VAR),
    ("SET @id = LAST_INSERT_ID()", PIN_VAR),
    ("SET @u = UUID()", PIN_VAR),
    ("SET @v = my_func(1)", PIN_VAR),
    ("SET @p = ?", PIN_VAR),
    ("SET @sid = @@server_id", PIN_VAR),
    ("SET @g = @@GLOBAL.gtid_executed", PIN_VAR),
    ("SET @l = GET_LOCK('a', 1)", PIN_LOCK),
    ("SET @a = 1, @b = (SELECT 2)", PIN_VAR),
    ("SET GLOBAL max_connections = 500", GLOBAL),
    ("SET @@global.read_only = 1", GLOBAL),
    ("SET PERSIST max_connections = 500", GLOBAL),
    ("SET GLOBAL a = 1, b = 2", GLOBAL),
    ("SET @@GLOBAL.GTID_PURGED='+3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5'", GLOBAL),
    ("SET gtid_next = 'AUTOMATIC'", GLOBAL),
    ("SET insert_id = 5", GLOBAL),
    ("SET sql_mode = my_func()", WFN),
    ("SET PASSWORD = 'x'", WRITE),
    ("SET PASSWORD FOR 'u'@'%' = 'x'", WRITE),
    ("SET DEFAULT ROLE ALL TO 'u'@'%'", WRITE),
    ("SET STATEMENT max_statement_time = 10 FOR SELECT * FROM t", READ),
    ("SET STATEMENT max_statement_time = 10 FOR UPDATE t SET a = 1", WRITE),
    ("SET NAMES utf8mb4; SET autocommit = 1", SESSION),
    ("SET NAMES utf8mb4; SELECT 1", SESSION),
    // ---- proxy route
    ("SET @@switchyard_route = 'primary'", route(RouteOverride::Primary)),
    ("SET switchyard_route = replica", route(RouteOverride::Replica)),
    ("SET @switchyard_route = \"auto\"", route(RouteOverride::Auto)),
    ("set @@SwitchYard_Route='REPLICA'", route(RouteOverride::Replica)),
    ("SET SESSION switchyard_route = default", route(RouteOverride::Auto)),
    ("SET @@session.switchyard_route = primary", route(RouteOverride::Primary)),
    ("SET switchyard_route = 'elsewhere'", UNKNOWN),
    ("SET GLOBAL switchyard_route = 'primary'", UNKNOWN),
    ("SET switchyard_route = 'primary', autocommit = 1", UNKNOWN),
    ("SET switchyard_route = 'primary'; SELECT 1", UNKNOWN),
    // ---- executable comments
    ("SELECT /*M!100101 GET_LOCK('x', 1), */ 1", PIN_LOCK),
    ("/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */", SESSION),
    ("SELECT 1 /*!50000 FOR UPDATE */", LOCKING),
    ("SELECT 1 /*! ; DELETE FROM t */", WRITE),
    // ---- multi-statement
    ("SELECT 1; INSERT INTO t VALUES (1)", WRITE),
    ("INSERT INTO t VALUES (1); SELECT LAST_INSERT_ID()", WRITE),
    ("SELECT 1; LOCK TABLES t READ", PIN_TABLES),
    (MYSQLDUMP_TABLE, PIN_TABLES),
    ("", EMPTY),
    (";", EMPTY),
    ("-- just a comment\n", EMPTY),
    ("# just a comment", EMPTY),
    // ---- unknown and unparsable
    ("SELEC * FROM t", PARSE),
    ("SELECT * FROM (", PARSE),
    ("SELECT 'unterminated", PARSE),
    ("SELECT count(* FROM t", PARSE),
    ("SHOW", PARSE),
    ("USE", PARSE),
    ("START", PARSE),
    ("SET", PARSE),
    ("SET x", PARSE),
    ("SET @x", PARSE),
    ("BEGIN foo", PARSE),
    ("}{", PARSE),
    ("SELECT `unterminated", PARSE),
    ("/* unterminated SELECT 1", PARSE),
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
    assert!(answered >= 80, "cheap path answered only {answered}");
    // sysbench's statements and the plain writes must take the cheap path.
    for sql in [
        "SELECT c FROM sbtest1 WHERE id=?",
        "SELECT c FROM sbtest1 WHERE id BETWEEN ? AND ?",
        "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN ? AND ? ORDER BY c",
        "UPDATE sbtest1 SET k=k+1 WHERE id=?",
        "INSERT INTO sbtest1 (id, k, c, pad) VALUES (?, ?, ?, ?)",
        "DELETE FROM sbtest1 WHERE id=?",
        "CREATE TEMPORARY TABLE x (a int)",
        "LOCK TABLES t READ",
        "SELECT @a",
    ] {
        let toks = significant_tokens(sql).unwrap();
        assert!(cheap_path(&toks).is_some(), "{sql}");
    }
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT NOW()",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT a INTO @x FROM t",
        "SELECT @x := 1",
        "SELECT @@identity",
        "SELECT SQL_CALC_FOUND_ROWS a FROM t",
        "SELECT NEXT VALUE FOR s",
        "SELECT s.nextval",
        "BEGIN",
        "SET @x = 1",
    ] {
        let toks = significant_tokens(sql).unwrap();
        assert!(cheap_path(&toks).is_none(), "{sql}");
    }
}

fn cls(intent: Intent, reason: Reason) -> Classification {
    Classification {
        intent,
        reason,
        hint: None,
    }
}

#[test]
fn cheap_select_skips_the_parse_by_design() {
    let toks = significant_tokens("SELECT FROM WHERE").unwrap();
    assert_eq!(cheap_path(&toks), Some(cls(Intent::Read, Reason::Read)));
    assert_eq!(got("SELECT lower(FROM WHERE"), PARSE);
}

#[test]
fn unparsable_is_write_parse_error() {
    for sql in [
        "SELEC * FROM t",
        "hello world",
        "SELECT * FROM (",
        "SELECT 'unterminated",
        "SELECT \"unterminated",
        "SELECT `unterminated",
        "SELECT count(* FROM t",
        "WITH x AS (SELECT 1",
        "/* unterminated comment SELECT 1",
        "EXPLAIN SELECT * FROM (",
        "DESCRIBE",
        "SET NAMES",
        "SET @x = ",
        "SET STATEMENT x = 1 FOR",
        "START TRANSACTION READ",
    ] {
        assert_eq!(got(sql), PARSE, "{sql}");
    }
}

#[test]
fn unparsable_writes_pick_better_reasons() {
    // sqlparser rejects these valid statements; the intent stays Write.
    assert_eq!(got("SELECT * FROM t LOCK IN SHARE MODE"), LOCKING);
    assert_eq!(got("SELECT NEXT VALUE FOR s FROM t"), WFN);
    assert_eq!(got("SELECT * FROM t INTO OUTFILE 'x'"), INTO);
}

#[test]
fn no_backslash_escapes_ambiguity_fails_closed() {
    // With NO_BACKSLASH_ESCAPES the string ends at `\'` and a DELETE follows.
    let sql = "SELECT 'a\\'; DELETE FROM t; -- '";
    assert_eq!(got(sql), PARSE);
    let sql = "SET @x = 'a\\'; DELETE FROM t; -- '";
    assert_eq!(got(sql), PARSE);
    // Backslashes that read the same either way stay reads.
    assert_eq!(got("SELECT 'C:\\\\dir' FROM t"), READ);
    assert_eq!(got("SELECT * FROM t WHERE a LIKE 'x\\_%'"), READ);
    // A write is a write whatever the quoting.
    assert_eq!(got("INSERT INTO t VALUES ('a\\'b')"), WRITE);
}

#[test]
fn hints_are_reported_but_do_not_change_intent() {
    let c = classify("/* switchyard: primary */ SELECT 1", &[]);
    assert_eq!(
        (c.intent, c.reason, c.hint),
        (Intent::Read, Reason::Read, Some(Hint::Primary))
    );
    let c = classify("# switchyard: replica\nSELECT LAST_INSERT_ID()", &[]);
    assert_eq!(
        (c.intent, c.reason, c.hint),
        (Intent::Write, Reason::WriteFunction, Some(Hint::Replica))
    );
    let c = classify("-- switchyard: primary\nSELECT 1", &[]);
    assert_eq!(c.hint, Some(Hint::Primary));
    let c = classify("SELECT 1 /* switchyard: primary */", &[]);
    assert_eq!(c.hint, None);
    let c = classify("/*!40101 SET NAMES utf8 */ /* switchyard: primary */", &[]);
    assert_eq!((c.intent, c.hint), (Intent::SessionSet, None));
}

#[test]
fn extra_write_functions_override_the_safe_list() {
    assert_eq!(classify("SELECT LOWER('x')", &[]).intent, Intent::Read);
    let extra = vec!["LOWER".to_string()];
    let c = classify("SELECT lower('x')", &extra);
    assert_eq!((c.intent, c.reason), (Intent::Write, Reason::WriteFunction));
}

#[test]
fn statement_level_entry_matches_single_statement_texts() {
    let extra = extra();
    for (sql, want) in CORPUS {
        if sql.contains('\\') {
            continue;
        }
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
fn cache_returns_the_same_answers_with_the_mysql_dialect() {
    let classifier = Classifier::new(ClassifierSettings {
        write_functions: extra(),
        cache_size: 64,
        dialect: Dialect::Mysql,
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
        dialect: Dialect::Mysql,
    });
    for (sql, want) in CORPUS {
        let c = uncached.classify(sql);
        assert_eq!((c.intent, c.reason), *want, "{sql}");
    }
    let c = classifier.classify("# switchyard: replica\nSELECT 1");
    assert_eq!(c.hint, Some(Hint::Replica));
    assert_eq!(classifier.classify("SELECT 1").hint, None);
}

#[test]
fn dialects_differ_where_they_should() {
    let pg = Classifier::new(ClassifierSettings::default());
    let my = Classifier::new(ClassifierSettings {
        dialect: Dialect::Mysql,
        ..ClassifierSettings::default()
    });
    assert_eq!(ClassifierSettings::default().dialect, Dialect::Postgres);
    // `#` is a comment in MySQL only; LOCK TABLES pins in MySQL, LOCK writes in PostgreSQL.
    assert_eq!(my.classify("SELECT 1 # x").intent, Intent::Read);
    assert_eq!(pg.classify("LOCK TABLE t").intent, Intent::Write);
    assert_eq!(my.classify("LOCK TABLES t READ").intent, Intent::Pin);
    assert_eq!(
        my.classify("SET @@switchyard_route = 'replica'").intent,
        Intent::ProxyRoute(RouteOverride::Replica)
    );
}

#[test]
fn sysbench_literals_vary() {
    for id in [1, 5012, 99999, 100000] {
        assert_eq!(got(&format!("SELECT c FROM sbtest1 WHERE id={id}")), READ);
        assert_eq!(
            got(&format!("UPDATE sbtest1 SET k=k+1 WHERE id={id}")),
            WRITE
        );
        assert_eq!(
            got(&format!(
                "SELECT SUM(k) FROM sbtest1 WHERE id BETWEEN {id} AND {}",
                id + 99
            )),
            READ
        );
    }
}

#[test]
fn reason_labels() {
    assert_eq!(Reason::LockTables.as_str(), "lock_tables");
    assert_eq!(Reason::UserVariable.as_str(), "user_variable");
    assert_eq!(Reason::StoredProcedure.as_str(), "stored_procedure");
    assert_eq!(Reason::LocalInfile.as_str(), "local_infile");
}
