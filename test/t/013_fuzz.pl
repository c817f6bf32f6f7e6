# Fuzz test of every SQL-callable function (issue 25): no input may crash
# the server or raise an internal error (XX000).
#
# The functions are enumerated from pg_proc (schemas event_store and
# message_store), so a function added later is fuzzed without touching this
# file.  Arguments are generated from the argument types: NULL, empty and
# oversized strings, extreme and negative numbers, infinite and out-of-range
# times, JSON of every kind where an object is expected (and a deeply nested
# one), NULL and empty arrays, arrays holding NULL, two-dimensional arrays,
# and for composite types (event_store.events, new_event, stream_append)
# the all-NULL row, rows with each field NULL and rows with each field set to
# each value of its type, recursively.  Each function gets a call with
# plausible arguments, an all-NULL call, one call per argument per value
# with the others plausible, and seeded random combinations.
#
# Every call runs in its own transaction that is rolled back (procedures,
# which commit, run in autocommit mode), with a statement timeout, first as
# a superuser, then as an event_store_admin.  Run on a node with
# event_store preloaded and on one without.  The test fails if the
# postmaster logs a child killed by a signal, if pg_postmaster_start_time
# changes, if the connection is lost, or if any call ends in SQLSTATE XX000;
# it prints how many calls it made and the SQLSTATEs it saw.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $seed = $ENV{ES_FUZZ_SEED} // 25;
my $random_calls = $ENV{ES_FUZZ_RANDOM} // 30;    # random combinations per function
my $tmp = PostgreSQL::Test::Utils::tempdir;

# Data the calls can find: streams, a category, tags, a Message DB message,
# projections (inline and async) and a subscription.
my $seed_sql = <<'SQL';
CREATE EXTENSION event_store;
CREATE EXTENSION event_store_messagedb;
SELECT event_store.append_event('s-1', 'T', '{"a": 1}');
SELECT event_store.append_event('s-1', 'U', '{"a": {"b": 2}}');
SELECT event_store.append('cat-1', ARRAY[event_store.event('A', '{}', '{"m": 1}', NULL, NULL, ARRAY['t1', 't2']),
                                         event_store.event('B', '{"x": [1, 2]}')]);
SELECT message_store.write_message('00000000-0000-4000-8000-000000000001', 'msg-1', 'M', '{"n": 1}');
CREATE TABLE public.fuzz_rm (n bigint);
CREATE FUNCTION public.fuzz_handler(e event_store.events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.fuzz_rm VALUES (e.global_position) $$;
CREATE FUNCTION public.fuzz_reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM public.fuzz_rm $$;
SELECT event_store.create_projection('p-inline', 'public.fuzz_handler(event_store.events)', NULL, NULL, 'inline', 'public.fuzz_reset()');
SELECT event_store.create_projection('p-async', 'public.fuzz_handler(event_store.events)', NULL, ARRAY['cat'], 'async');
SELECT event_store.subscribe('sub-1');
CREATE ROLE fuzz_admin;
GRANT event_store_admin, message_store TO fuzz_admin;
GRANT USAGE ON SCHEMA public TO fuzz_admin;
SQL

# Scalar values by type (SQL expressions; each is cast to its type).  The
# first is the plausible value used while another argument varies.
my %scalar = (
	'text' => [
		"'s-1'", 'NULL', "''", "'cat-1'", "'cat'", "'nosuch-1'", "'msg-1'", "'p-inline'",
		"'sub-1'", "repeat('x', 1025)", "repeat('é', 600)", "'\$all'", "'-'",
		"E'a\\nb'", "'%'", "'stream'", "'inline'", "'async'", "'store'", "'1 day'",
		"'s-1; DROP TABLE x'"
	],
	'name' => [ "'event_store_archive'", 'NULL', "''", "'pg_catalog'", "repeat('n', 100)" ],
	'bigint' => [
		'1', 'NULL', '0', '-1', '-2', '2', '1000000', '9223372036854775807',
		'(-9223372036854775807 - 1)'
	],
	'integer' => [ '1', 'NULL', '0', '-1', '2', '1000', '2147483647', '(-2147483647 - 1)' ],
	'boolean' => [ 'true', 'NULL', 'false' ],
	'oid' => [ "'pg_class'::regclass::oid", 'NULL', '0', '1', '4294967295' ],
	'uuid' => [
		'gen_random_uuid()', 'NULL', "'00000000-0000-0000-0000-000000000000'",
		"'00000000-0000-4000-8000-000000000001'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'"
	],
	'jsonb' => [
		"'{}'", 'NULL', "'[]'", "'\"s\"'", "'1'", "'null'", "'true'", "'{\"a\": null}'",
		"'{\"a\": {\"b\": [1, {\"c\": null}]}}'", "'[{}]'", "'{\"\": \"\"}'",
		"repeat('{\"a\": ', 2000) || '1' || repeat('}', 2000)",
		"repeat('[', 2000) || repeat(']', 2000)",
		"(SELECT jsonb_object_agg('k' || i, i) FROM generate_series(1, 2000) i)"
	],
	'timestamp with time zone' => [
		'now()', 'NULL', "'infinity'", "'-infinity'", "'4713-01-01 00:00:00+00 BC'",
		"'294276-12-31 23:59:59+00'", "'2000-01-01 00:00:00+00'", "'1970-01-01 00:00:00+00'",
		"now() + interval '10 years'"
	],
	'interval' => [
		"'1 day'", 'NULL', "'0'", "'-1 day'", "'1 microsecond'", "'1 month'",
		"'178000000 years'", "'-178000000 years'"
	],
	'regprocedure' => [
		"'event_store.merge_patch(jsonb,event_store.events)'", 'NULL', '0', '4294967295',
		"'event_store.count_by_type(jsonb,event_store.events)'",
		"'event_store.event_count(bigint,event_store.events)'",
		"'public.fuzz_handler(event_store.events)'", "'public.fuzz_reset()'",
		"'pg_catalog.now()'", "'pg_catalog.int8pl(bigint,bigint)'",
		"'event_store.run_maintenance()'", "'event_store._refuse_modification()'",
		"'pg_catalog.count(\"any\")'"
	],
	'regclass' => [
		"'event_store.events'", 'NULL', '0', '4294967295', "'event_store.streams'", "'pg_class'",
		"'event_store.partition_info'", "'event_store.global_position_seq'",
		"(SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass ORDER BY 1 DESC LIMIT 1)",
		"(SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass ORDER BY 1 LIMIT 1)",
		"'public.fuzz_rm'"
	],
	'xid8' => [ "'1'", 'NULL', "'0'", "'18446744073709551615'" ],
	'internal' => ['NULL'],
);
# Message DB's ids are varchar: a valid one first, so its writes go deeper.
$scalar{'character varying'} = [ 'gen_random_uuid()::text', @{ $scalar{'text'} } ];

# anyelement: an initial state of several types (fold's polymorphic argument).
my @anyelement = (
	"'{}'::jsonb", 'NULL::jsonb', "'[]'::jsonb", "'\"s\"'::jsonb", '0::bigint', 'NULL::bigint',
	"'9223372036854775807'::bigint", "'x'::text", 'NULL::text', 'NULL::event_store.events',
	'(SELECT e FROM event_store.events e LIMIT 1)'
);

my ($node, %attrs_of);
my @report;    # "node, SQLSTATE, call" of every call, written to ES_FUZZ_REPORT if set

# Values of one type, as typed SQL expressions; composite and array types are
# built from their attributes' and elements' values, down to depth 2.
sub values_of
{
	my ($type, $depth) = @_;
	if ($type eq 'anyelement')
	{
		return @anyelement;
	}
	if ($type =~ /^(.*)\[\]$/)
	{
		my $elem = $1;
		my @ev = values_of($elem, $depth + 1);
		my @out = (
			"ARRAY[$ev[0]]::$type", "NULL::$type", "'{}'::$type", "ARRAY[NULL]::$type",
			"ARRAY[$ev[0], NULL]::$type", "ARRAY[[$ev[0]], [$ev[0]]]::$type",
			"ARRAY(SELECT $ev[0] FROM generate_series(1, 10001))::$type",
			"array_fill($ev[0], ARRAY[2], ARRAY[0])::$type");
		push @out, map { "ARRAY[$_]::$type" } @ev[ 1 .. $#ev ] if $depth < 2;
		return @out;
	}
	if (exists $attrs_of{$type})
	{
		my @attrs = @{ $attrs_of{$type} };
		my @vals = map { [ values_of($_, $depth + 1) ] } @attrs;
		my @base = map { $_->[0] } @vals;
		my $row = sub { 'ROW(' . join(', ', @_) . ")::$type" };
		my @out = ($row->(@base), "NULL::$type", $row->(map { 'NULL' } @attrs));
		for my $i (0 .. $#attrs)
		{
			my @choices = $depth < 2 ? @{ $vals[$i] }[ 1 .. $#{ $vals[$i] } ] : ('NULL');
			for my $v (@choices)
			{
				my @r = @base;
				$r[$i] = $v;
				push @out, $row->(@r);
			}
		}
		# a real row of the log, as a reducer gets it
		unshift @out, '(SELECT e FROM event_store.events e WHERE stream_id = \'s-1\' LIMIT 1)'
		  if $type eq 'event_store.events';
		return @out;
	}
	my $vals = $scalar{$type};
	return ("NULL::$type") unless $vals;
	return map { $_ eq 'NULL' ? "NULL::$type" : "($_)::$type" } @$vals;
}

# The calls for every function of the two schemas.
sub generate_calls
{
	my $rows = $node->safe_psql('postgres', q{
		SELECT p.oid, p.prokind,
		       quote_ident(n.nspname) || '.' || quote_ident(p.proname),
		       coalesce((SELECT string_agg(format_type(t, NULL), '|' ORDER BY i)
		                 FROM unnest(p.proargtypes) WITH ORDINALITY a(t, i)), '')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname IN ('event_store', 'message_store')
		ORDER BY n.nspname, p.proname, p.oid});
	%attrs_of = ();
	my $comp = $node->safe_psql('postgres', q{
		SELECT format_type(t.oid, NULL), string_agg(format_type(a.atttypid, NULL), '|' ORDER BY a.attnum)
		FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE n.nspname IN ('event_store', 'message_store') AND t.typtype = 'c'
		GROUP BY 1});
	for my $line (split /\n/, $comp)
	{
		my ($t, $a) = split /\|/, $line, 2;
		$attrs_of{$t} = [ split /\|/, $a ];
	}

	srand($seed);
	my (@calls, %nfunc);
	for my $line (split /\n/, $rows)
	{
		my ($oid, $kind, $name, $args) = split /\|/, $line, 4;
		my @types = $args eq '' ? () : split /\|/, $args;
		my @vals = map { [ values_of($_, 0) ] } @types;
		my $verb = $kind eq 'p' ? 'CALL' : 'SELECT';
		my %seen;
		my $add = sub {
			my $c = "$verb $name(" . join(', ', @_) . ')';
			return if $seen{$c}++;
			push @calls, { sql => $c, proc => $kind eq 'p' };
		};
		$nfunc{$name}++;
		$add->(map { $_->[0] } @vals);
		$add->(map { "NULL::$_" } grep { $_ ne 'anyelement' } @types)
		  unless grep { $_ eq 'anyelement' } @types;
		for my $i (0 .. $#types)
		{
			for my $v (@{ $vals[$i] })
			{
				my @a = map { $_->[0] } @vals;
				$a[$i] = $v;
				$add->(@a);
			}
		}
		for (1 .. ($#types >= 1 ? $random_calls : 0))
		{
			$add->(map { $_->[ int(rand(@$_)) ] } @vals);
		}
	}
	return (\@calls, scalar(keys %nfunc));
}

# Run calls from index $from on through one psql; returns the index of the
# first call whose result was not reported (the connection was lost there),
# or scalar @$calls when all ran.  Fills %$states (SQLSTATE => count) and
# @$internal (calls that ended in XX000).
sub run_calls
{
	my ($calls, $from, $states, $internal, $label, $role) = @_;
	my $file = "$tmp/fuzz_${label}_${role}_$from.sql";
	open my $fh, '>', $file or die "$file: $!";
	print $fh "\\set VERBOSITY verbose\n\\o /dev/null\nSET statement_timeout = '2s';\nSET client_min_messages = error;\n";
	print $fh "SET ROLE $role;\n" if $role;
	for my $i ($from .. $#$calls)
	{
		my $c = $calls->[$i];
		if ($c->{proc})
		{
			print $fh "$c->{sql};\n\\echo R $i :SQLSTATE\n";
		}
		else
		{
			print $fh "BEGIN;\n$c->{sql};\n\\echo R $i :SQLSTATE\nROLLBACK;\n";
		}
	}
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-q', '-f', $file, '-d', $node->connstr('postgres') ],
		'<', '/dev/null', '>', \$out, '2>', \$err);
	my $next = $from;
	for my $line (split /\n/, $out)
	{
		next unless $line =~ /^R (\d+) (\S+)$/;
		$states->{$2}++;
		push @$internal, $calls->[$1]{sql} if $2 eq 'XX000';
		push @report, "$label" . ($role ? " as $role" : '') . "\t$2\t$calls->[$1]{sql}\n";
		$next = $1 + 1;
	}
	# the texts of internal errors, for the report
	for my $line (split /\n/, $err)
	{
		diag("internal error: $line") if $line =~ /ERROR:\s+XX000/;
	}
	return $next;
}

sub fuzz_node
{
	my ($label, $preload) = @_;
	$node = PostgreSQL::Test::Cluster->new("fuzz_$label");
	$node->init;
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = '$preload'\nrestart_after_crash = on\nmax_locks_per_transaction = 256\n");
	$node->start;
	$node->safe_psql('postgres', $seed_sql);
	my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

	my ($calls, $nfunctions) = generate_calls();
	# as a superuser (every path), then as an event_store_admin that is
	# also message_store (the privilege checks meet the same inputs)
	for my $role ('', 'fuzz_admin')
	{
		my $pass = $role ? "$label as $role" : $label;
		my (%states, @internal, @crashers);
		my $i = 0;
		while ($i < @$calls)
		{
			$i = run_calls($calls, $i, \%states, \@internal, $label, $role);
			last if $i >= @$calls;
			# the connection was lost at call $i: note it, wait for the
			# restart, go on after it
			push @crashers, $calls->[$i]{sql};
			diag("[$pass] connection lost at: $calls->[$i]{sql}");
			$node->poll_query_until('postgres', 'SELECT true') or die 'server did not come back';
			$i++;
		}
		my $ncalls = 0;
		$ncalls += $_ for values %states;
		note("[$pass] $ncalls calls to $nfunctions functions; SQLSTATEs: "
			  . join(', ', map { "$_ x$states{$_}" } sort keys %states));
		diag("[$pass] fuzz: $ncalls calls to $nfunctions functions");
		is(scalar(@crashers), 0, "[$pass] no call lost the connection")
		  or diag(join("\n", @crashers));
		is(scalar(@internal), 0, "[$pass] no call raised an internal error (XX000)")
		  or diag(join("\n", @internal));
		cmp_ok($ncalls + scalar(@crashers), '==', scalar(@$calls), "[$pass] every generated call ran");
	}

	my $log = slurp_file($node->logfile);
	my @signals = ($log =~ /^.*(?:terminated by signal|terminated by exception|was terminated by).*$/mg);
	is(scalar(@signals), 0, "[$label] the postmaster logged no child killed by a signal")
	  or diag(join("\n", @signals));
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
		$started, "[$label] the postmaster never restarted");
	$node->stop;
}

fuzz_node('preloaded', 'event_store');
fuzz_node('not_preloaded', '');

if ($ENV{ES_FUZZ_REPORT})
{
	open my $fh, '>', $ENV{ES_FUZZ_REPORT} or die "$ENV{ES_FUZZ_REPORT}: $!";
	print $fh @report;
	close $fh;
}

done_testing();
