# The gap-free feed without shared_preload_libraries ("locks" mode, 1.8):
# the same protocol as the registry, on the lock manager.  The three
# scenarios of the feed's isolation specs, plus what only this mode has to
# get right: a first draw rolled back to a savepoint (its lock goes with
# the subtransaction, the next draw must lock again) and a prepared
# transaction (its lock outlives the session).  The stress test
# (003_feed_stress.pl) runs in this mode too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('locks');
$node->init;
$node->append_conf('postgresql.conf', "max_prepared_transactions = 2\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
is($node->safe_psql('postgres', 'SELECT event_store.feed_mode()'), 'locks', 'not preloaded: locks mode');

my $start = $node->safe_psql('postgres', 'SELECT coalesce(max(global_position), 0) FROM event_store.events');

# What a reader gets now: the streams of the events after $start, in order.
sub feed
{
    return $node->safe_psql('postgres',
        "SELECT coalesce(string_agg(stream_id, ',' ORDER BY global_position), '') FROM event_store.read_all($start, 1000)");
}

my $s1 = $node->background_psql('postgres');
my $s2 = $node->background_psql('postgres');
my $s3 = $node->background_psql('postgres');

# 1. T1 appends and stays open, T2 appends and commits: the reader sees
#    neither until T1 commits, then both in position order.
$s1->query_safe("BEGIN; SELECT event_store.append_event('lk-1', 'E', '{}');");
$s2->query_safe("SELECT event_store.append_event('lk-2', 'E', '{}');");
is(feed(), '', 'T2 committed after T1 drew: held back while T1 is open');
is($node->safe_psql('postgres', 'SELECT in_flight FROM event_store._feed_in_flight()'),
   '1', 'one append in flight, seen in the lock table');

# 3. An unrelated transaction holding an xid does not hold the feed back.
$s3->query_safe("BEGIN; CREATE TEMP TABLE unrelated (x int); INSERT INTO unrelated VALUES (1);");
$s1->query_safe("COMMIT;");
is(feed(), 'lk-1,lk-2', 'after T1 commits: both, in order, despite an open unrelated transaction');

# 2. An aborted append leaves a hole the feed steps over.
$s1->query_safe("BEGIN; SELECT event_store.append_event('lk-3', 'E', '{}'); ROLLBACK;");
$s2->query_safe("SELECT event_store.append_event('lk-4', 'E', '{}');");
is(feed(), 'lk-1,lk-2,lk-4', 'the aborted position is stepped over');

# A first draw rolled back to a savepoint releases its lock with the
# subtransaction; the transaction's next draw must take one again.
$s1->query_safe("BEGIN; SAVEPOINT a; SELECT event_store.append_event('lk-5', 'E', '{}'); ROLLBACK TO a;"
      . " SELECT event_store.append_event('lk-6', 'E', '{}');");
$s2->query_safe("SELECT event_store.append_event('lk-7', 'E', '{}');");
is(feed(), 'lk-1,lk-2,lk-4', 'after ROLLBACK TO SAVEPOINT the next draw holds the feed back again');
$s1->query_safe("COMMIT;");
is(feed(), 'lk-1,lk-2,lk-4,lk-6,lk-7', 'then both, in order');

# A draw in a released savepoint stays locked by the transaction.
$s1->query_safe("BEGIN; SAVEPOINT b; SELECT event_store.append_event('lk-8', 'E', '{}'); RELEASE b;"
      . " SAVEPOINT c; SELECT 1; ROLLBACK TO c;");
$s2->query_safe("SELECT event_store.append_event('lk-9', 'E', '{}');");
is(feed(), 'lk-1,lk-2,lk-4,lk-6,lk-7', 'a draw in a released savepoint still holds the feed back');
$s1->query_safe("COMMIT;");
is(feed(), 'lk-1,lk-2,lk-4,lk-6,lk-7,lk-8,lk-9', 'then both');

# A prepared transaction keeps its lock (and the feed held) until COMMIT PREPARED.
$s1->query_safe("BEGIN; SELECT event_store.append_event('lk-10', 'E', '{}'); PREPARE TRANSACTION 'p1';");
$s2->query_safe("SELECT event_store.append_event('lk-11', 'E', '{}');");
is(feed(), 'lk-1,lk-2,lk-4,lk-6,lk-7,lk-8,lk-9', 'a prepared append holds the feed back');
$node->safe_psql('postgres', "COMMIT PREPARED 'p1'");
is(feed(), 'lk-1,lk-2,lk-4,lk-6,lk-7,lk-8,lk-9,lk-10,lk-11', 'after COMMIT PREPARED: both');

# Our lock tags are not the SQL advisory locks' (objsubid 1 and 2).
$s1->query_safe("BEGIN; SELECT event_store.append_event('lk-12', 'E', '{}');");
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid IN (1, 2)"),
   '0', 'no SQL-level advisory lock taken');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 17747"),
   '1', 'one position lock held by the open append');
$s1->query_safe("COMMIT;");
is($node->safe_psql('postgres', 'SELECT in_flight FROM event_store._feed_in_flight()'),
   '0', 'nothing in flight after commit');

# Positions above 2^48 do not fit the lock key: a clear error, nothing written.
$node->safe_psql('postgres', "SELECT setval('event_store.global_position_seq', 281474976710655)");
my ($rc, $out, $err) = $node->psql('postgres', "SELECT event_store.append_event('lk-13', 'E', '{}')");
like($err, qr/global_position 281474976710656 is out of the range the feed can track without preloading/,
     'a position above 2^48 is refused in locks mode');
is($node->safe_psql('postgres', "SELECT count(*) FROM event_store.events WHERE stream_id = 'lk-13'"),
   '0', 'nothing written');

$s3->query_safe("ROLLBACK;");
$_->quit for ($s1, $s2, $s3);
$node->stop;
done_testing();
