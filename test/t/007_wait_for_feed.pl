# Push without NOTIFY's commit lock (1.11, issue 26).
#
# Preloaded:
#  (a) a waiter in wait_for_feed() sleeps while an append is in flight (it
#      stays on the waiter list) and returns once that append commits, with
#      the committed position;
#  (b) an append that rolls back does not wake it; the next commit does;
#  (c) pg_terminate_backend() of a sleeping waiter leaves nobody on the list;
#  (d) LISTEN event_store_events gets a notification from the database's
#      notifier worker (not from the appender) after appends commit, the
#      last one with the final horizon as payload; with event_store.notify
#      off in every appender, no worker is started.
# Not preloaded ("locks" mode):
#  (e) wait_for_feed() still returns after another session's commit (it
#      polls), and LISTEN gets the appender's own per-transaction NOTIFY.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('wait_for_feed');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
is($node->safe_psql('postgres', 'SELECT event_store.feed_mode()'), 'registry', 'preloaded: registry mode');

sub poll_until
{
    my ($n, $sql, $want) = @_;
    for (1 .. 600)
    {
        return 1 if $n->safe_psql('postgres', $sql) eq $want;
        usleep(50_000);
    }
    return 0;
}

sub horizon { return $_[0]->safe_psql('postgres', 'SELECT event_store.feed_horizon()'); }

# Start a wait in $session for positions past $after; returns once the
# backend is on the waiter list.
sub start_wait
{
    my ($n, $session, $after, $waiters) = @_;
    $session->query_until(qr/waiting/, "\\echo waiting\nSELECT 'r=' || event_store.wait_for_feed($after, 60000);\n");
    ok(poll_until($n, 'SELECT event_store._feed_waiters()', $waiters), "waiter for $after is on the list");
}

sub wait_result
{
    my ($session) = @_;
    my $out = $session->query_until(qr/r=\d+/, '');
    return $out =~ /r=(\d+)/ ? $1 : undef;
}

my $w = $node->background_psql('postgres');
my $a = $node->background_psql('postgres');

# (a) in flight: still waiting; commit: woken with the committed position
my $h = horizon($node);
start_wait($node, $w, $h, 1);
$a->query_safe("BEGIN; SELECT event_store.append_event('wf-a', 'E', '{}');");
is($node->safe_psql('postgres', 'SELECT event_store._feed_waiters()'), '1', 'in-flight append: the waiter sleeps on');
$a->query_safe('COMMIT');
my $pos = $node->safe_psql('postgres', "SELECT max(global_position) FROM event_store.events WHERE stream_id = 'wf-a'");
is(wait_result($w), $pos, 'the commit woke the waiter, which returned the committed position');
is($node->safe_psql('postgres', 'SELECT event_store._feed_waiters()'), '0', 'nobody left on the list');

# (b) rollback: not woken; the next commit wakes it, past the hole
$h = horizon($node);
start_wait($node, $w, $h, 1);
$a->query_safe("BEGIN; SELECT event_store.append_event('wf-b', 'E', '{}');");
$a->query_safe('ROLLBACK');
is($node->safe_psql('postgres', 'SELECT event_store._feed_waiters()'), '1', 'a rolled-back append does not wake the waiter');
$a->query_safe("SELECT event_store.append_event('wf-c', 'E', '{}');");
$pos = $node->safe_psql('postgres', "SELECT max(global_position) FROM event_store.events WHERE stream_id = 'wf-c'");
is(wait_result($w), $pos, 'the next commit woke it, with that commit\'s position (past the hole)');

# (c) a terminated waiter leaves nothing behind
my $k = $node->background_psql('postgres', on_error_stop => 0);
start_wait($node, $k, horizon($node) + 1000000, 1);
$node->safe_psql('postgres',
    "SELECT pg_terminate_backend(pid, 60000) FROM pg_stat_activity WHERE query LIKE '%wait_for_feed(%' AND pid <> pg_backend_pid()");
ok(poll_until($node, 'SELECT event_store._feed_waiters()', '0'), 'terminated waiter: nobody left on the list');
eval { $k->quit; };    # its psql lost the connection

# (d) LISTEN: coalesced notifications from the notifier worker
my $l = $node->background_psql('postgres');
$l->query_safe('LISTEN event_store_events');
$a->query_safe("SELECT event_store.append_event('wf-d', 'E', '{}') FROM generate_series(1, 1)") for 1 .. 20;
my $final = horizon($node);
my $got = '';
for (1 .. 200)
{
    $got .= $l->query('SELECT 1');
    $got .= $l->{stderr};
    last if $got =~ /payload "$final"/;
    usleep(50_000);
}
like($got, qr/Asynchronous notification "event_store_events" with payload "$final" received/, 'LISTEN gets the final horizon');
my @senders = $got =~ /received from server process with PID (\d+)/g;
my $apid = $a->query_safe('SELECT pg_backend_pid()');
ok(@senders && !grep({ $_ == $apid } @senders), 'sent by the notifier, not by the appender');
my @payloads = $got =~ /payload "(\d+)"/g;
ok(scalar(@payloads) <= 20, 'at most one notification per append (' . scalar(@payloads) . ' for 20)');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store notifier'"),
   '1', 'one notifier worker for the database');
ok(poll_until($node, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store notifier'", '0'),
   'the idle notifier retires');
$a->query_safe("SET event_store.notify = off; SELECT event_store.append_event('wf-off', 'E', '{}'); RESET event_store.notify;");
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'event_store notifier'"),
   '0', 'notify off: no notifier started');
$l->quit;
$w->quit;
$a->quit;
$node->stop;

# (e) not preloaded: polling and the appender's own NOTIFY
my $n2 = PostgreSQL::Test::Cluster->new('wait_for_feed_locks');
$n2->init;
$n2->start;
$n2->safe_psql('postgres', 'CREATE EXTENSION event_store');
is($n2->safe_psql('postgres', 'SELECT event_store.feed_mode()'), 'locks', 'not preloaded: locks mode (wait_for_feed polls)');
$w = $n2->background_psql('postgres');
$a = $n2->background_psql('postgres');
$l = $n2->background_psql('postgres');
$l->query_safe('LISTEN event_store_events');
$h = horizon($n2);
$w->query_until(qr/waiting/, "\\echo waiting\nSELECT 'r=' || event_store.wait_for_feed($h, 60000);\n");
ok(poll_until($n2, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%wait_for_feed($h,%' AND state = 'active' AND pid <> pg_backend_pid()", '1'),
   'the waiter is waiting');
$a->query_safe("SELECT event_store.append_event('wf-e', 'E', '{}');");
$pos = $n2->safe_psql('postgres', "SELECT max(global_position) FROM event_store.events WHERE stream_id = 'wf-e'");
is(wait_result($w), $pos, 'not preloaded: the waiter returns after the commit (polling)');
$apid = $a->query_safe('SELECT pg_backend_pid()');
$got = '';
for (1 .. 100)
{
    $got .= $l->query('SELECT 1');
    $got .= $l->{stderr};
    last if $got =~ /payload "$pos"/;
    usleep(50_000);
}
like($got, qr/with payload "$pos" received from server process with PID $apid/, 'not preloaded: the appender sends its own NOTIFY');
$w->quit;
$a->quit;
$l->quit;
$n2->stop;

done_testing();
