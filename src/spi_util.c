/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  Running SQL from C: the one place that reports a failed SPI call (see
 *	  spi_util.h), and the plans kept for the backend's life.
 *
 *	  Every module that runs SQL from C checks each result through the
 *	  macros of spi_util.h, which call es_spi_failed only on failure, and
 *	  connects through es_spi_connect, so no SPI_connect goes unchecked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"

#include "spi_util.h"

/*
 * Report a failed SPI call: "<what> failed: <code>", plus what was
 * expected (the code, the row count) so that the log says which of the two
 * differed.  fmt and its arguments describe the statement.  Never returns.
 */
void
es_spi_failed(int rc, int expected, int64 nrows, const char *fmt,...)
{
	StringInfoData what;

	initStringInfo(&what);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&what, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&what, needed);
	}

	if (expected != ES_SPI_OK_ANY && rc == expected && nrows >= 0)
		elog(ERROR, "%s failed: %s processed " UINT64_FORMAT " rows, expected " INT64_FORMAT,
			 what.data, SPI_result_code_string(rc), SPI_processed, nrows);
	else if (expected != ES_SPI_OK_ANY)
		elog(ERROR, "%s failed: %s, expected %s",
			 what.data, SPI_result_code_string(rc), SPI_result_code_string(expected));
	else
		elog(ERROR, "%s failed: %s", what.data, SPI_result_code_string(rc));
}

/*
 * Prepare a statement once and keep it for the backend's life (SPI_keepplan);
 * the plan cache re-plans it when the tables it uses change.  Used by every
 * module that runs SQL from C.
 */
SPIPlanPtr
es_keep_plan(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);

	es_spi_check_plan(plan, "SPI_prepare for \"%s\"", sql);
	SPI_keepplan(plan);
	return plan;
}

/*
 * SPI_connect, checked: the SPI stack is connected on return.
 */
void
es_spi_connect(void)
{
	int			rc = SPI_connect();

	es_spi_check(rc, SPI_OK_CONNECT, "SPI_connect");
}

/*
 * Run body(arg) as role (with SECURITY_LOCAL_USERID_CHANGE, as a SECURITY
 * DEFINER function would), inside its own SPI connection.  The caller's
 * user and security context are restored however body ends.  The lifecycle
 * functions and scavenge() run as the log's owner this way.
 */
void
es_spi_run_as(Oid role, void (*body) (void *arg), void *arg)
{
	Oid			save_userid;
	int			save_sec_context;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	es_spi_connect();
	PG_TRY();
	{
		body(arg);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	SPI_finish();
}
