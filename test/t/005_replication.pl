# Replication (issue 5, docs/scaling.md).
#
# A: the publisher (wal_level = logical) appends and runs
#    event_store.create_publication().
# B: a logical subscriber of A on the same machine.  Its partitions are
#    made with event_store.ensure_partitions() before it subscribes; an
#    ENABLE ALWAYS row trigger on event_store.events builds a read model from
#    the replicated events.  B's events, streams, folds (now and at a past
#    as_of) and feed equal A's; the log is still append-only on B.
# C: a physical hot standby of A.  It answers state_as_of and read_stream
#    like A, also when a snapshot policy makes folds due to write automatic
#    snapshots (a standby skips them).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $preload = "shared_preload_libraries = 'event_store'\n";

# ---------------------------------------------------------------- A
my $pa = PostgreSQL::Test::Cluster->new('publisher');
$pa->init(allows_streaming => 'logical');
$pa->append_conf('postgresql.conf', $preload);
$pa->start;
$pa->safe_psql('postgres', 'CREATE EXTENSION event_store');

# Single events, batches, and a few streams with many versions.
sub append_round
{
    my ($round) = @_;
    $pa->safe_psql('postgres', qq{
        SELECT event_store.append_event('customer-' || i, 'CustomerSeen',
                   jsonb_build_object('round', $round, 'name', 'c' || i, 'amount', i))
          FROM generate_series(1, 20) i;
        SELECT event_store.append('order-' || i, ARRAY[
                   event_store.event('OrderPlaced', jsonb_build_object('round', $round, 'status', 'placed', 'amount', i * 10),
                                     '{"by": "tap"}'),
                   event_store.event('ItemAdded', jsonb_build_object('items', jsonb_build_array(i, $round), 'amount', 1)),
                   event_store.event('OrderPaid', jsonb_build_object('status', 'paid', 'paid_round', $round))])
          FROM generate_series(1, 10) i;
        SELECT event_store.append_event('account-' || (v % 3), 'Deposited',
                   jsonb_build_object('balance', v, 'amount', 2, 'last', 'r$round v' || v, 'drop_me', CASE WHEN v % 2 = 0 THEN NULL ELSE 'x' END))
          FROM generate_series(1, 60) v;
    });
}

append_round(1);
is_deeply(
    [ split /\n/, $pa->safe_psql('postgres', 'SELECT event_store.create_publication()') ],
    ['{event_store,event_store_streams}'],
    'A: create_publication() returns both publications');

# ---------------------------------------------------------------- B
my $sb = PostgreSQL::Test::Cluster->new('subscriber');
$sb->init;
$sb->append_conf('postgresql.conf', $preload);
$sb->start;
$sb->safe_psql('postgres', 'CREATE EXTENSION event_store');

my $oldest = $pa->safe_psql('postgres', 'SELECT min(recorded_at) FROM event_store.events');
ok($sb->safe_psql('postgres',
        "SELECT event_store.ensure_partitions('$oldest', now() + interval '2 months')") >= 1,
    'B: ensure_partitions created the partitions for A\'s log');

# The read model: per stream, how many events, the last version and type,
# and the sum of data.amount; filled by a row trigger that fires for the
# apply worker too (ENABLE ALWAYS).
$sb->safe_psql('postgres', q{
    CREATE TABLE public.rm_streams (
        stream_id    text PRIMARY KEY,
        events       bigint NOT NULL,
        last_version bigint NOT NULL,
        last_type    text NOT NULL,
        total        numeric NOT NULL);
    CREATE FUNCTION public.rm_apply() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
    BEGIN
        INSERT INTO public.rm_streams AS r (stream_id, events, last_version, last_type, total)
        VALUES (NEW.stream_id, 1, NEW.stream_version, NEW.event_type, coalesce((NEW.data->>'amount')::numeric, 0))
        ON CONFLICT (stream_id) DO UPDATE
           SET events = r.events + 1,
               last_version = greatest(r.last_version, excluded.last_version),
               last_type = CASE WHEN excluded.last_version > r.last_version THEN excluded.last_type ELSE r.last_type END,
               total = r.total + excluded.total;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER rm_apply AFTER INSERT ON event_store.events
        FOR EACH ROW EXECUTE FUNCTION public.rm_apply();
    ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER rm_apply;
});

my $a_conn = $pa->connstr('postgres') =~ s/'/''/gr;
$sb->safe_psql('postgres', qq{
    CREATE SUBSCRIPTION es_from_a CONNECTION '$a_conn'
        PUBLICATION event_store, event_store_streams});
$sb->wait_for_subscription_sync($pa, 'es_from_a');

# What must be equal on A and B.
my %q = (
    events => q{
        SELECT count(*) || ' ' || md5(string_agg(e::text, E'\n' ORDER BY global_position))
          FROM event_store.events e},
    streams => q{
        SELECT count(*) || ' ' || md5(string_agg(s::text, E'\n' ORDER BY stream_id))
          FROM event_store.streams s},
    states => q{
        SELECT string_agg(stream_id || '=' || coalesce(event_store.state_as_of(stream_id)::text, 'NULL'), E'\n' ORDER BY stream_id)
          FROM event_store.streams},
    # the feed: every event, in position order (rows numbered as read_all returns them)
    feed => q{
        SELECT count(*) || ' ' || (count(*) = (SELECT count(*) FROM event_store.events)) || ' '
               || bool_and(ordinality = rank) || ' ' || md5(string_agg(f::text, E'\n' ORDER BY ordinality))
          FROM (SELECT f, f.ordinality, rank() OVER (ORDER BY f.global_position)
                  FROM event_store.read_all(0, 1000000) WITH ORDINALITY f) x},
);
# The read model B's trigger should have built: per stream, from the log.
$q{expected_model} = qq{SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
    SELECT format('%s %s %s %s %s', stream_id, count(*), max(stream_version),
                  (array_agg(event_type ORDER BY stream_version DESC))[1],
                  sum(coalesce((data->>'amount')::numeric, 0))) AS line
      FROM event_store.events GROUP BY stream_id) x};
my $read_model = q{SELECT string_agg(format('%s %s %s %s %s', stream_id, events, last_version, last_type, total), E'\n'
                                     ORDER BY format('%s %s %s %s %s', stream_id, events, last_version, last_type, total))
                     FROM public.rm_streams};

sub compare_a_b
{
    my ($label) = @_;
    for my $what (qw(events streams states feed))
    {
        is($sb->safe_psql('postgres', $q{$what}), $pa->safe_psql('postgres', $q{$what}),
            "$label: B's $what equal A's");
    }
    like($sb->safe_psql('postgres', $q{feed}), qr/^\d+ true true /,
        "$label: B's read_all(0) returns every event, in position order");
    is($sb->safe_psql('postgres', $read_model), $pa->safe_psql('postgres', $q{expected_model}),
        "$label: B's read model is built from every replicated event");
}

is($sb->safe_psql('postgres', 'SELECT count(*) FROM event_store.events'), '110',
    'initial sync: B has all 110 events');
compare_a_b('initial sync');

# More appends on A arrive through the stream of changes.
my $as_of = $pa->safe_psql('postgres', 'SELECT max(recorded_at) FROM event_store.events');
append_round(2);
append_round(3);
$pa->safe_psql('postgres', q{
    SELECT event_store.append_event('account-0', 'Closed', '{"closed": true, "balance": null}', expected_version => 60)});
$pa->wait_for_catchup('es_from_a');
is($sb->safe_psql('postgres', 'SELECT count(*) FROM event_store.events'), '331',
    'streaming: B has all 331 events');
compare_a_b('streaming');
is($sb->safe_psql('postgres', q{SELECT version FROM event_store.streams WHERE stream_id = 'account-0'}), '61',
    'streaming: stream versions replicated');

# state_as_of at a past time (the end of round 1) on B equals A's.
my $past_states = qq{
    SELECT string_agg(stream_id || '=' || coalesce(event_store.state_as_of(stream_id, '$as_of')::text, 'NULL'), E'\n' ORDER BY stream_id)
      FROM event_store.streams};
is($sb->safe_psql('postgres', $past_states), $pa->safe_psql('postgres', $past_states),
    'state_as_of at a past as_of: B equals A');
is($sb->safe_psql('postgres', qq{SELECT event_store.state_as_of('order-1', '$as_of')->>'round'}), '1',
    'state_as_of at the past as_of sees round 1 only');
is($sb->safe_psql('postgres', q{SELECT event_store.state_as_of('order-1')->>'round'}), '3',
    'state_as_of now sees round 3');

# Partitions made on B after the trigger (the subscriber premakes its own)
# fire it for the apply worker as well: the clone keeps ENABLE ALWAYS.
ok($sb->safe_psql('postgres',
        q{SELECT event_store.ensure_partitions(now() + interval '3 months', now() + interval '5 months')}) >= 1,
    'B: more partitions made after the trigger');
is($sb->safe_psql('postgres', q{
        SELECT count(*) FILTER (WHERE t.tgenabled IS DISTINCT FROM 'A') || ' of ' || count(*)
          FROM event_store.partition_ranges() r
          LEFT JOIN pg_trigger t ON t.tgrelid = r.partition AND t.tgname = 'rm_apply'}),
   '0 of ' . $sb->safe_psql('postgres', 'SELECT count(*) FROM event_store.partition_ranges()'),
   'B: every partition has the read-model trigger, ENABLE ALWAYS');

# Append-only on B too.
my ($ret, $out, $err) = $sb->psql('postgres', 'DELETE FROM event_store.events');
like($err, qr/append-only/, 'B: DELETE refused');
($ret, $out, $err) = $sb->psql('postgres', q{UPDATE event_store.events SET data = '{}'});
like($err, qr/append-only/, 'B: UPDATE refused');
($ret, $out, $err) = $sb->psql('postgres', 'TRUNCATE event_store.events');
like($err, qr/append-only/, 'B: TRUNCATE refused');
is($sb->safe_psql('postgres', 'SELECT count(*) FROM event_store.events'), '331', 'B: nothing removed');

# ---------------------------------------------------------------- C
$pa->backup('for_standby');
my $sc = PostgreSQL::Test::Cluster->new('standby');
$sc->init_from_backup($pa, 'for_standby', has_streaming => 1);
$sc->start;

# Automatic snapshots every 2 versions for merge_patch (state_as_of): A
# writes some now; the standby must skip the ones that come due there.
$pa->safe_psql('postgres', q{
    SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 2)});
$pa->safe_psql('postgres', q{SELECT count(event_store.state_as_of(stream_id)) FROM event_store.streams});
ok($pa->safe_psql('postgres', 'SELECT count(*) FROM event_store.snapshots') > 0,
    'A: the snapshot policy wrote snapshots');
# Rounds 4 and 5, each followed by folds on A that write snapshots (they
# replicate to C); round 6 leaves every stream 2 or more versions past its
# last snapshot, so folds on C come to versions where a snapshot is due.
append_round(4);
$pa->safe_psql('postgres', $q{states});
append_round(5);
$pa->safe_psql('postgres', $q{states});
append_round(6);
$pa->wait_for_catchup($sc);

# A's answers from here on come from a transaction rolled back, so that the
# snapshots its folds write do not reach C while C's are counted.
sub a_without_snapshots
{
    my ($sql) = @_;
    return $pa->safe_psql('postgres', "BEGIN;\n$sql;\nROLLBACK;");
}
$pa->wait_for_catchup('es_from_a');

is($sc->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'C is a hot standby');
is($sc->safe_psql('postgres', q{
        SELECT count(*) FROM event_store.streams s
         WHERE s.version >= coalesce((SELECT max(n.version) FROM event_store.snapshots n WHERE n.stream_id = s.stream_id), 0) + 2}),
   '33', 'C: automatic snapshots are due for all 33 streams');
my $snapshots_on_c = $sc->safe_psql('postgres', 'SELECT count(*) || \' \' || max(taken_at) FROM event_store.snapshots');
is($sc->safe_psql('postgres', $q{states}), a_without_snapshots($q{states}),
    'C: state_as_of equals A for every stream (snapshot policy on, snapshots due)');
is($sc->safe_psql('postgres', $past_states), a_without_snapshots($past_states),
    'C: state_as_of at a past as_of equals A');
is($sc->safe_psql('postgres', 'SELECT count(*) || \' \' || max(taken_at) FROM event_store.snapshots'), $snapshots_on_c,
    'C: folds wrote no snapshots');
my $read_streams = q{
    SELECT count(*) || ' ' || md5(string_agg(r::text, E'\n' ORDER BY s.stream_id, r.stream_version))
      FROM event_store.streams s, LATERAL event_store.read_stream(s.stream_id, 1, 100000) r};
is($sc->safe_psql('postgres', $read_streams), $pa->safe_psql('postgres', $read_streams),
    'C: read_stream equals A for every stream');
is($sc->safe_psql('postgres', $q{events}), $pa->safe_psql('postgres', $q{events}), 'C: events equal A');
is($sc->safe_psql('postgres', $q{feed}), $pa->safe_psql('postgres', $q{feed}), 'C: read_all(0) equals A');
is($sc->safe_psql('postgres', 'SELECT mode, horizon = last_drawn_position, appends_in_flight FROM event_store.feed_status'),
   'registry|t|0', 'C: feed_status answers on the standby (nothing in flight: the horizon is the last drawn position)');
# A fold on the standby inside an explicit read-only transaction too.
is($sc->safe_psql('postgres', q{
        BEGIN TRANSACTION READ ONLY;
        SELECT event_store.state_as_of('account-1')::text;
        COMMIT;}),
   a_without_snapshots(q{SELECT event_store.state_as_of('account-1')::text}),
   'C: state_as_of in a read-only transaction');

# B keeps up with rounds 4 to 6 as well.
$pa->wait_for_catchup('es_from_a');
compare_a_b('after round 6');

$sc->stop;
$sb->stop;
$pa->stop;
done_testing();
