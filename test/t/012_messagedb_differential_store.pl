# The differential test of the Message DB compatible API
# (010_messagedb_differential.pl), with ours under the event id scope
# 'store' (1.9): every partition's event_id index unique, so that
# write_message's duplicate ids are refused by the index of the partition
# it writes to rather than by its lookup.  The same calls, the same
# answers as the real Message DB, messages of any JSON type and the
# errors' fields included (issue 31).
use strict;
use warnings;
# loaded here, at compile time, so that their INIT blocks run
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{MESSAGEDB_DIFF_ID_SCOPE} = 'store';
my $script = 'test/t/010_messagedb_differential.pl';
unless (my $ok = do "./$script")
{
	die "cannot run $script: $@" if $@;
	die "cannot read $script: $!" unless defined $ok;
}
