# Long streams and large payloads (CI size): a 1 MB event and a batch of
# eight, a batch of exactly event_store.max_batch_size events (one more is
# refused), and a stream of 100,000 events of about 1 kB appended in
# batches of 10,000: versions, read_stream paging, read_stream_backward,
# state_as_of (now and at a past time), fold with merge_patch, event_count
# and a PL/pgSQL reducer, fold_to_version, all against formulas; and the
# backend's memory (peak RSS, anonymous RSS, memory contexts) around the
# folds and reads stays within generous bounds.  The checks live in
# test/long/long_stream.sql; test/long/long_stream.sh runs them with
# 1,000,000 events on demand.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $n = 100_000;

my $node = PostgreSQL::Test::Cluster->new('long_stream');
$node->init;
# small shared buffers: the peak RSS measured includes the shared pages the
# backend touched
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\nshared_buffers = 16MB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');

my ($stdout, $stderr);
my $rc = $node->psql('postgres', undef,
    extra_params => [ '-v', 'ON_ERROR_STOP=1', '-v', "n=$n", '-v', 'pad=30',
                      '-v', 'mem_bound=' . 64 * 1024 * 1024, '-f', 'test/long/long_stream.sql' ],
    stdout => \$stdout, stderr => \$stderr, on_error_die => 0);
is($rc, 0, 'test/long/long_stream.sql ran without error') or diag($stderr);

my $checks = 0;
for my $line (split /\n/, $stdout)
{
    my ($kind, $name, $got, $expected) = split /\|/, $line, 4;
    next unless defined $expected;
    if ($kind eq 'check')
    {
        is($got, $expected, $name);
    }
    elsif ($kind eq 'mem')
    {
        cmp_ok($got, '<', $expected, "memory flat: $name ($got bytes, bound $expected)");
    }
    else
    {
        next;
    }
    $checks++;
}
is($checks, 27, 'every check of long_stream.sql reported');

$node->stop;
done_testing();
