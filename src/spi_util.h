/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  Checking the result of every SPI call the same way (src/spi_util.c).
 *
 *	  A failed SPI call is a can't-happen (the statements are the
 *	  extension's own), so it is reported with elog: one message shape,
 *	  "<what> failed: <result code>", naming what was expected when the
 *	  code or the row count differs.  The checks are macros so that the
 *	  success path costs one comparison and the message arguments are
 *	  evaluated only on failure.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_SPI_UTIL_H
#define EVENT_STORE_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"

/* "expected" for es_spi_failed: any non-negative result code */
#define ES_SPI_OK_ANY		0
/* "nrows" for es_spi_failed: the row count was not checked */
#define ES_SPI_ANY_ROWS		(-1)

extern void es_spi_failed(int rc, int expected, int64 nrows, const char *fmt,...)
			pg_attribute_printf(4, 5);
extern void es_spi_connect(void);
extern SPIPlanPtr es_keep_plan(const char *sql, int nargs, Oid *argtypes);
extern void es_spi_run_as(Oid role, void (*body) (void *arg), void *arg);

/*
 * es_spi_check(rc, SPI_OK_SELECT, "reading %s", what): errors unless the
 * call returned exactly the expected code.
 */
#define es_spi_check(rc, expected, ...) \
	do { \
		if (unlikely((rc) != (expected))) \
		{ \
			es_spi_failed((rc), (expected), ES_SPI_ANY_ROWS, __VA_ARGS__); \
			pg_unreachable(); \
		} \
	} while (0)

/* ... and unless it processed exactly nrows rows */
#define es_spi_check_rows(rc, expected, nrows, ...) \
	do { \
		if (unlikely((rc) != (expected) || SPI_processed != (uint64) (nrows))) \
		{ \
			es_spi_failed((rc), (expected), (nrows), __VA_ARGS__); \
			pg_unreachable(); \
		} \
	} while (0)

/* errors if the call returned an error code (any SPI_OK_* is fine) */
#define es_spi_check_ok(rc, ...) \
	do { \
		if (unlikely((rc) < 0)) \
		{ \
			es_spi_failed((rc), ES_SPI_OK_ANY, ES_SPI_ANY_ROWS, __VA_ARGS__); \
			pg_unreachable(); \
		} \
	} while (0)

/* errors if SPI_prepare and friends returned no plan (SPI_result says why) */
#define es_spi_check_plan(plan, ...) \
	do { \
		if (unlikely((plan) == NULL)) \
		{ \
			es_spi_failed(SPI_result, ES_SPI_OK_ANY, ES_SPI_ANY_ROWS, __VA_ARGS__); \
			pg_unreachable(); \
		} \
	} while (0)

#endif							/* EVENT_STORE_SPI_UTIL_H */
