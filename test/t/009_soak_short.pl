# The soak of test/soak/soak.sh, short (45 s, 3 pgbench clients): the same
# workload scripts and invariants (test/soak/*.pgbench, setup.sql,
# check.sql).  No failed transaction or aborted client, no ERROR in the
# server log (the expected version conflicts are caught and counted), each
# client backend's anonymous memory within a generous bound of its value
# after the warm-up, and the invariants: versions contiguous from 1,
# event_store.streams agrees with the events, both projections' tables
# agree with a recomputation, both feed readers saw every event once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

my $duration = 45;
my $clients = 3;
my $bound_kb = 65536;

my $node = PostgreSQL::Test::Cluster->new('soak_short');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'event_store'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION event_store');
my ($rc, $out, $err) = $node->psql('postgres', undef, extra_params => [ '-v', 'ON_ERROR_STOP=1', '-f', 'test/soak/setup.sql' ]);
is($rc, 0, 'setup.sql') or diag($err);
my $log_offset = -s $node->logfile;

my @scripts = map { ('-f', "test/soak/$_") } qw(append.pgbench@30 append_expected.pgbench@15 batch.pgbench@10
    read.pgbench@15 fold.pgbench@15 async.pgbench@5 feed.pgbench@8 maintenance.pgbench@2);
my ($bout, $berr) = ('', '');
my $h;
{
    # the pgbench clients' backends are told apart by their application name
    local $ENV{PGAPPNAME} = 'soak_pgbench';
    $h = IPC::Run::start(
        [ 'pgbench', '-n', '-c', $clients, '-j', $clients, '-T', $duration, @scripts,
          '-h', $node->host, '-p', $node->port, 'postgres' ],
        '<', '/dev/null', '>', \$bout, '2>', \$berr);
}

# sample the client backends' RssAnon every 3 s
my (%base, %peak);
my $t0 = time;
while ($h->pumpable)
{
    $h->pump_nb;
    my $elapsed = time - $t0;
    if ($elapsed >= $duration / 5)
    {
        my $pids = $node->safe_psql('postgres', q{SELECT string_agg(pid::text, ' ') FROM pg_stat_activity WHERE application_name = 'soak_pgbench' AND pid <> pg_backend_pid()});
        for my $pid (split / /, $pids)
        {
            open my $fh, '<', "/proc/$pid/status" or next;
            my ($kb) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
            close $fh;
            next unless defined $kb;
            $base{$pid} //= $kb;
            $peak{$pid} = $kb if !defined $peak{$pid} || $kb > $peak{$pid};
        }
    }
    last if $elapsed > $duration + 120;
    usleep(3_000_000);
}
my $finished = $h->finish;
ok($finished, 'pgbench exited 0') or diag("$bout\n$berr");
like($bout, qr/number of failed transactions: 0 /, 'no failed transactions') or diag($bout);
my ($ntx) = $bout =~ /number of transactions actually processed: (\d+)/;
ok(($ntx // 0) > 0, "pgbench ran transactions (" . ($ntx // 0) . ")");
my $log = slurp_file($node->logfile, $log_offset);
my @errors = $log =~ /^.*ERROR:.*$/mg;
is(scalar(@errors), 0, 'the server logged no ERROR') or diag(join("\n", @errors[0 .. ($#errors < 4 ? $#errors : 4)]));

is(scalar(keys %base), $clients, "memory sampled for the $clients client backends");
for my $pid (sort keys %base)
{
    cmp_ok($peak{$pid} - $base{$pid}, '<', $bound_kb,
           "memory flat: backend $pid RssAnon $base{$pid} kB after warm-up, peak $peak{$pid} kB");
}

my $checks = $node->safe_psql('postgres', '\i test/soak/check.sql');
my $n = 0;
for my $line (split /\n/, $checks)
{
    my ($kind, $name, $got, $expected) = split /\|/, $line, 4;
    if ($kind eq 'check') { is($got, $expected, $name); $n++; }
    elsif ($kind eq 'info') { note("$name: $got"); }
}
is($n, 9, 'every invariant of check.sql reported');

$node->stop;
done_testing();
