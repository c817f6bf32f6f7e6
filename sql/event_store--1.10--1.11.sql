-- event_store 1.10 -> 1.11: hardening (issue 25) and PostgreSQL 15-18
-- (issue 24).  Every section below says which class of attack it closes.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.11'" to load this file. \quit

