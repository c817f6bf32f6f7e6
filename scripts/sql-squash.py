#!/usr/bin/env python3
"""Squash an extension's install script and upgrade chain into one full
install script for the current version (contrib style).

    scripts/sql-squash.py                     # writes sql/event_store--X.Y.sql and
                                              # sql/event_store_messagedb--X.Y.sql
    scripts/sql-squash.py --check             # exit 1 if a written file is stale
    scripts/sql-squash.py EXT --out FILE      # one extension, to FILE ('-': stdout)

The script reads sql/EXT--1.0.sql and the upgrade scripts EXT--A--B.sql up
to the control file's default_version, replays them statement by statement
on a model of the extension's objects, and writes every object's final
definition once:

  * CREATE [OR REPLACE] FUNCTION/PROCEDURE/VIEW/AGGREGATE: the last
    definition wins; objects dropped later never appear;
  * ALTER TABLE ... ADD COLUMN and ALTER TYPE ... ADD ATTRIBUTE are folded
    into the CREATE; other ALTERs are kept verbatim after their object;
  * COMMENT ON: the last comment of a live object wins, printed after it;
  * GRANT/REVOKE are kept in chain order in one section at the end, minus
    those on objects dropped later; "ON ALL FUNCTIONS IN SCHEMA" is spelled
    out as the objects that existed at that point of the chain, so that the
    statement means what it meant during the upgrade;
  * DO blocks that grant over a catalog query (DO_EXPANDERS) are spelled
    out as the GRANTs they made at their point of the chain; other DO
    blocks that create roles or grant (KEEP_DO) move to the privileges;
    prerequisite checks (RAISE EXCEPTION only) go first; every other DO
    block, and DML, of an upgrade script is a data migration (meaningful
    only for an existing installation) and is dropped;
  * a statement the generator does not model is kept as written, in chain
    order, after the objects (with a warning on stderr).

Ordering follows the hard dependencies (types of arguments and results,
SQL-standard function bodies, views, defaults, index expressions,
triggers); other function bodies are not checked at creation
(check_function_bodies = off, as pg_dump does).  The output is
deterministic: the same chain always gives the same bytes.

test/t/018_install_equals_upgrade.pl proves that a fresh install of the
generated script and 1.0 updated step by step are identical in the
catalogs, and that the generated file is current.
"""
import argparse
import os
import re
import textwrap
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
SQL = os.path.join(ROOT, 'sql')
EXTENSIONS = ('event_store', 'event_store_messagedb')
SCHEMAS = ('event_store', 'event_store_archive', 'message_store')


# ---------------------------------------------------------------------------
# Lexing: split a script into statements, keeping the comments above each.
# ---------------------------------------------------------------------------
class Stmt:
    def __init__(self, text, comment, fname, seq, heading):
        self.text = text.strip()          # the statement, with its ';'
        self.comment = comment            # comment lines right above it
        self.fname = fname
        self.seq = seq
        self.heading = heading            # the banner it was written under
        self.code = strip_comments(self.text)
        self.norm = ' '.join(self.code.split())
        self.up = self.norm.upper()


def strip_comments(text):
    """The text with -- and /* */ comments blanked, literals kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('--', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ')
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(' ')
            i = j
        elif c == "'":
            j = skip_quoted(text, i, "'")
            out.append(text[i:j])
            i = j
        elif c == '"':
            j = skip_quoted(text, i, '"')
            out.append(text[i:j])
            i = j
        elif c == '$':
            m = re.match(r'\$([A-Za-z_][A-Za-z_0-9]*)?\$', text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                j = n if j < 0 else j + len(tag)
                out.append(text[i:j])
                i = j
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def skip_quoted(text, i, q):
    j = i + 1
    n = len(text)
    while j < n:
        if text[j] == q:
            if j + 1 < n and text[j + 1] == q:
                j += 2
                continue
            return j + 1
        j += 1
    return n


BANNER = re.compile(r'^--\s*-{10,}\s*$')


def split_statements(path, seq0=0):
    text = open(path, encoding='utf-8').read()
    fname = os.path.basename(path)
    stmts = []
    i, n = 0, len(text)
    start = 0
    heading = ''
    seq = seq0
    depth = 0

    def flush(end):
        nonlocal start, seq, heading
        chunk = text[start:end]
        start = end
        # leading comments / blank lines belong to the statement below them
        lines = chunk.split('\n')
        k = 0
        while k < len(lines) and (lines[k].strip() == '' or lines[k].lstrip().startswith('--')):
            k += 1
        lead = lines[:k]
        body = '\n'.join(lines[k:]).strip()
        # banner: ---- / -- title / ---- : remember it as the heading
        for a in range(len(lead) - 2):
            if BANNER.match(lead[a].strip()) and lead[a + 1].strip().startswith('--'):
                b = a + 1
                title = []
                para = True
                while b < len(lead) and not BANNER.match(lead[b].strip()) and lead[b].strip().startswith('--'):
                    ln = lead[b].strip()[2:].strip()
                    if not ln:
                        para = False     # the heading is the first paragraph
                    elif para:
                        title.append(ln)
                    b += 1
                if b < len(lead):
                    # its first sentence
                    heading = re.split(r'(?<=[.:])\s+(?=[A-Z*(])', ' '.join(title))[0].strip().rstrip('.:')
        # the comment block directly above the statement (no blank line, no banner)
        com = []
        for ln in reversed(lead):
            s = ln.strip()
            if not s.startswith('--') or BANNER.match(s):
                break
            com.append(ln.rstrip())
        com.reverse()
        if not body:
            return
        if body.startswith('\\'):
            return
        seq += 1
        stmts.append(Stmt(body, com, fname, seq, heading))

    while i < n:
        c = text[i]
        if text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            i = n if j < 0 else j + 2
        elif c in "'\"":
            i = skip_quoted(text, i, c)
        elif c == '$':
            m = re.match(r'\$([A-Za-z_][A-Za-z_0-9]*)?\$', text[i:])
            if m:
                tag = m.group(0)
                j = text.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
            else:
                i += 1
        elif c == '\\' and (i == 0 or text[i - 1] == '\n'):
            # psql meta-command line (\echo ... \quit): its own statement
            flush(i)
            j = text.find('\n', i)
            i = n if j < 0 else j
            start = i
        elif c == '(':
            depth += 1
            i += 1
        elif c == ')':
            depth -= 1
            i += 1
        elif c == ';':
            i += 1
            # BEGIN ATOMIC ... END; bodies contain ';'
            head = strip_comments(text[start:i]).upper()
            if 'BEGIN ATOMIC' in ' '.join(head.split()) and not re.search(r'\bEND\s*;\s*$', head):
                continue
            flush(i)
        else:
            i += 1
    flush(n)
    return stmts, seq


# ---------------------------------------------------------------------------
# Names and signatures
# ---------------------------------------------------------------------------
TYPE_ALIASES = {
    'int': 'integer', 'int4': 'integer', 'int8': 'bigint', 'int2': 'smallint',
    'bool': 'boolean', 'float8': 'double precision', 'float4': 'real',
    'timestamptz': 'timestamp with time zone', 'timestamp': 'timestamp without time zone',
    'varchar': 'character varying', 'decimal': 'numeric',
}
MULTIWORD = ('double', 'character', 'timestamp', 'time', 'bit', 'national')
IDENT = r'(?:"[^"]+"|[A-Za-z_][A-Za-z_0-9$]*)'
QNAME = IDENT + r'(?:\s*\.\s*' + IDENT + r')?'


def qname(s):
    """Normalise a possibly schema-qualified name: lower case, no quotes."""
    parts = [p.strip() for p in re.split(r'\.', s.strip())]
    return '.'.join(p[1:-1] if p.startswith('"') else p.lower() for p in parts)


def split_top(s, sep=','):
    parts, depth, cur, i = [], 0, [], 0
    while i < len(s):
        c = s[i]
        if c in "'\"":
            j = skip_quoted(s, i, c)
            cur.append(s[i:j])
            i = j
            continue
        if c == '(' or c == '[':
            depth += 1
        elif c == ')' or c == ']':
            depth -= 1
        if c == sep and depth == 0:
            parts.append(''.join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if ''.join(cur).strip():
        parts.append(''.join(cur))
    return parts


def norm_type(t):
    t = ' '.join(t.lower().split())
    t = re.sub(r'\s*\[\s*\]', '[]', t)
    arr = ''
    while t.endswith('[]'):
        arr += '[]'
        t = t[:-2].strip()
    for sch in ('pg_catalog.',):
        if t.startswith(sch):
            t = t[len(sch):]
    t = re.sub(r'\(.*\)$', '', t).strip()     # typmods
    t = TYPE_ALIASES.get(t, t)
    return t.replace('"', '') + arr


def arg_types(arglist):
    """Identity argument types of a CREATE FUNCTION/DROP FUNCTION arg list."""
    out = []
    for a in split_top(arglist):
        a = a.strip()
        if not a:
            continue
        a = re.split(r'\s+DEFAULT\s+|\s*=\s*', a, maxsplit=1, flags=re.I)[0].strip()
        mode = 'in'
        m = re.match(r'(IN|OUT|INOUT|VARIADIC)\s+(.*)$', a, re.I | re.S)
        if m:
            mode = m.group(1).lower()
            a = m.group(2).strip()
        if mode == 'out':
            continue
        toks = a.split()
        if len(toks) > 1 and toks[0].lower() not in MULTIWORD:
            a = ' '.join(toks[1:])
        out.append(norm_type(a))
    return tuple(out)


def paren_after(s, pos):
    """(inside, end) of the parenthesised group starting at s[pos] == '('."""
    depth = 0
    i = pos
    while i < len(s):
        c = s[i]
        if c in "'\"":
            i = skip_quoted(s, i, c)
            continue
        if c == '(':
            depth += 1
        elif c == ')':
            depth -= 1
            if depth == 0:
                return s[pos + 1:i], i + 1
        i += 1
    raise ValueError('unbalanced parentheses: ' + s[:80])


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------
class Obj:
    def __init__(self, key, kind, stmt):
        self.key = key
        self.kind = kind
        self.define = stmt            # the current defining statement
        self.text = stmt.text
        self.first = stmt             # where it was first created
        self.extras = []              # ALTERs etc. kept after the definition
        self.comment = None           # COMMENT ON statement
        self.config = None            # pg_extension_config_dump call
        self.owner = None             # for indexes/triggers: the table key
        self.colcomments = {}         # column -> COMMENT ON COLUMN statement


SECTION_OF = {
    'schema': 0, 'access method': 3, 'type': 1, 'sequence': 1, 'table': 2,
    'function': 3, 'aggregate': 3, 'view': 4, 'index': 2,
    'trigger': 5, 'event trigger': 5, 'policy': 5,
}
SECTION_TITLES = {
    0: 'Schemas',
    1: 'Types and sequences',
    2: 'Tables (with their indexes and extension configuration)',
    3: 'Functions, by the part of the store they serve',
    4: 'Views',
    5: 'Triggers, event triggers and policies',
    6: 'Made at install time',
    7: 'Privileges: the whole privilege model, in the order it was built',
}

# DO blocks of upgrade scripts that an install needs too (roles and
# privileges); recognised by a marker in their text.  Every other DO block
# of an upgrade script is a data migration and is dropped.
KEEP_DO = (
    'CREATE ROLE',
    'GRANT ',
    'REVOKE ',
)


def routine_sig(model, k):
    o = model.objs[k]
    what = 'PROCEDURE' if o.define.up.startswith(('CREATE PROCEDURE', 'CREATE OR REPLACE PROCEDURE')) else 'FUNCTION'
    return '%s %s(%s)' % (what, k[1], ', '.join(k[2]))


def expand_grants_by_name(model, st):
    """1.4--1.5: EXECUTE on every overload of each listed name that existed."""
    out = []
    for role, name in re.findall(r"\[\s*'(\w+)'\s*,\s*'(\w+)'\s*\]", st.code):
        for k in model.order:
            if k in model.objs and k[0] in ('function', 'aggregate') and k[1] == 'event_store.' + name:
                out.append(('GRANT EXECUTE ON %s TO %s;' % (routine_sig(model, k), role), k))
    return out


def expand_select_on_relations(model, st):
    """1.4--1.5: SELECT on every table, view and sequence that existed."""
    out = []
    for k in model.order:
        if k in model.objs and k[0] in ('table', 'view', 'sequence') and k[1].startswith('event_store.'):
            out.append(('GRANT SELECT ON %s TO event_store_reader;' % k[1], k))
    return out


# DO blocks whose effect depends on which objects exist when they run: the
# generator spells them out as the statements they ran at that point.
DO_EXPANDERS = (
    ('grants constant text[][]', expand_grants_by_name),
    ("GRANT SELECT ON %s TO event_store_reader", expand_select_on_relations),
)
CATALOG_LOOP = re.compile(r'FROM\s+pg_catalog\.pg_(proc|class|namespace|type)\b', re.I)


class Model:
    def __init__(self, ext):
        self.ext = ext
        self.objs = {}                 # key -> Obj (live)
        self.order = []                # keys in creation order (incl. dead)
        self.privs = []                # (stmt_text, keys, comment)
        self.install = []              # statements run at install time
        self.checks = []               # prerequisite checks, run first
        self.verbatim = []             # statements kept as they are
        self.log = []

    # -- helpers --------------------------------------------------------
    def create(self, key, kind, st, replace=False):
        o = self.objs.get(key)
        if o is not None and replace:
            o.define = st
            o.text = st.text
            if kind in ('function', 'aggregate', 'view'):
                # CREATE OR REPLACE resets SET/SECURITY/volatility etc.
                o.extras = [e for e in o.extras if not e.startswith('ALTER FUNCTION') and not e.startswith('ALTER PROCEDURE')]
            return o
        if o is not None:
            raise SystemExit('%s: %s created twice (%s)' % (st.fname, key, st.norm[:80]))
        o = Obj(key, kind, st)
        self.objs[key] = o
        self.order.append(key)
        return o

    def drop(self, key, st):
        if key not in self.objs:
            if 'IF EXISTS' in st.up:
                return
            raise SystemExit('%s: drop of unknown %s' % (st.fname, key))
        del self.objs[key]
        # indexes/triggers of a dropped table go too
        for k in [k for k, o in self.objs.items() if o.owner == key]:
            del self.objs[k]
        # privileges on it die with it
        self.privs = [p for p in self.privs if key not in p[1]]

    def funcs_named(self, name):
        return [k for k in self.objs if k[0] in ('function', 'aggregate') and k[1] == name]

    def func_key(self, name, args, st):
        name = qname(name)
        if args is None:
            ks = self.funcs_named(name)
            if len(ks) != 1:
                raise SystemExit('%s: %s is ambiguous or unknown: %s' % (st.fname, name, ks))
            return ks[0]
        key = ('function', name, arg_types(args))
        if key in self.objs:
            return key
        akey = ('aggregate',) + key[1:]
        if akey in self.objs:
            return akey
        return key

    # -- one statement --------------------------------------------------
    def apply(self, st, base):
        u = st.up
        t = st.norm
        m = re.match(r'CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|AGGREGATE) (' + QNAME + r')\s*\(', t, re.I)
        if m:
            inside, _ = paren_after(t, m.end() - 1)
            kind = 'aggregate' if m.group(2).upper() == 'AGGREGATE' else 'function'
            key = (kind, qname(m.group(3)), arg_types(inside))
            self.create(key, kind, st, replace=bool(m.group(1)))
            return
        m = re.match(r'DROP (FUNCTION|PROCEDURE|AGGREGATE) (IF EXISTS )?(.*);$', t, re.I)
        if m:
            for item in split_top(m.group(3)):
                item = re.sub(r'\s+(CASCADE|RESTRICT)\s*$', '', item.strip(), flags=re.I)
                mm = re.match(r'(' + QNAME + r')\s*(\((.*)\))?\s*$', item)
                key = self.func_key(mm.group(1), mm.group(3), st)
                self.drop(key, st)
            return
        m = re.match(r'CREATE (OR REPLACE )?VIEW (' + QNAME + r')', t, re.I)
        if m:
            self.create(('view', qname(m.group(2))), 'view', st, replace=bool(m.group(1)))
            return
        m = re.match(r'DROP (VIEW|TABLE|TYPE|SEQUENCE|INDEX|SCHEMA) (IF EXISTS )?(' + QNAME + r')', t, re.I)
        if m:
            kind = m.group(1).lower()
            self.drop((kind, qname(m.group(3))), st)
            return
        m = re.match(r'CREATE (UNLOGGED )?TABLE (IF NOT EXISTS )?(' + QNAME + r')', t, re.I)
        if m:
            self.create(('table', qname(m.group(3))), 'table', st)
            return
        m = re.match(r'CREATE SEQUENCE (' + QNAME + r')', t, re.I)
        if m:
            self.create(('sequence', qname(m.group(1))), 'sequence', st)
            return
        m = re.match(r'CREATE SCHEMA (' + QNAME + r')', t, re.I)
        if m:
            self.create(('schema', qname(m.group(1))), 'schema', st)
            return
        m = re.match(r'CREATE (?:TYPE|DOMAIN) (' + QNAME + r')', t, re.I)
        if m:
            self.create(('type', qname(m.group(1))), 'type', st)
            return
        m = re.match(r'CREATE ACCESS METHOD (' + IDENT + r')', t, re.I)
        if m:
            self.create(('access method', qname(m.group(1))), 'access method', st)
            return
        m = re.match(r'CREATE (UNIQUE )?INDEX (CONCURRENTLY )?(IF NOT EXISTS )?(' + IDENT + r') ON (ONLY )?(' + QNAME + r')', t, re.I)
        if m:
            tbl = qname(m.group(6))
            sch = tbl.split('.')[0] if '.' in tbl else ''
            key = ('index', (sch + '.' if sch else '') + qname(m.group(4)))
            o = self.create(key, 'index', st)
            o.owner = ('table', tbl)
            return
        m = re.match(r'CREATE (OR REPLACE )?(CONSTRAINT )?TRIGGER (' + IDENT + r') .*? ON (' + QNAME + r')', t, re.I)
        if m and not u.startswith('CREATE EVENT'):
            tbl = qname(m.group(4))
            key = ('trigger', qname(m.group(3)), tbl)
            o = self.create(key, 'trigger', st, replace=bool(m.group(1)))
            o.owner = ('table', tbl) if ('table', tbl) in self.objs else ('view', tbl)
            return
        m = re.match(r'DROP TRIGGER (IF EXISTS )?(' + IDENT + r') ON (' + QNAME + r')', t, re.I)
        if m:
            self.drop(('trigger', qname(m.group(2)), qname(m.group(3))), st)
            return
        m = re.match(r'CREATE EVENT TRIGGER (' + IDENT + r')', t, re.I)
        if m:
            self.create(('event trigger', qname(m.group(1))), 'event trigger', st)
            return
        m = re.match(r'DROP EVENT TRIGGER (IF EXISTS )?(' + IDENT + r')', t, re.I)
        if m:
            self.drop(('event trigger', qname(m.group(2))), st)
            return
        m = re.match(r'ALTER EVENT TRIGGER (' + IDENT + r') ', t, re.I)
        if m:
            self.objs[('event trigger', qname(m.group(1)))].extras.append(st.text)
            return
        m = re.match(r'ALTER TABLE (ONLY )?(' + QNAME + r') (.*);$', t, re.I | re.S)
        if m:
            self.alter_table(('table', qname(m.group(2))), m.group(3), st)
            return
        m = re.match(r'ALTER TYPE (' + QNAME + r') ADD ATTRIBUTE (.*);$', t, re.I)
        if m:
            o = self.objs[('type', qname(m.group(1)))]
            o.text = fold_column(o.text, m.group(2))
            return
        m = re.match(r'ALTER (FUNCTION|PROCEDURE) (' + QNAME + r')\s*(\((.*?)\))? ', t, re.I)
        if m:
            key = self.func_key(m.group(2), m.group(4), st)
            self.objs[key].extras.append(st.text)
            return
        m = re.match(r'COMMENT ON (.*?) IS ', t, re.I | re.S)
        if m:
            key = self.comment_target(m.group(1), st)
            if key[0] == 'column':
                o = self.objs.get(('table', key[1])) or self.objs[('view', key[1])]
                o.colcomments[key[2]] = st
            elif key in self.objs:
                self.objs[key].comment = st
            elif key[0] == 'unknown':
                print('sql-squash: %s: kept verbatim (not modelled): %s' % (st.fname, t[:100]), file=sys.stderr)
                self.verbatim.append(st)
            else:
                raise SystemExit('%s: comment on unknown %s' % (st.fname, key))
            return
        if re.match(r'(GRANT|REVOKE) ', t, re.I):
            self.privilege(st)
            return
        m = re.match(r"SELECT pg_catalog\.pg_extension_config_dump\('(" + QNAME + r")'", t, re.I)
        if m:
            name = qname(m.group(1))
            key = ('table', name) if ('table', name) in self.objs else ('sequence', name)
            self.objs[key].config = st
            return
        if u.startswith('DO '):
            for marker, expand in DO_EXPANDERS:
                if marker in st.code:
                    com = list(st.comment) + ['-- (spelled out from a DO block of %s, as of that point of the chain)' % st.fname]
                    for txt, key in expand(self, st):
                        self.privs.append((txt, (key,), com, st))
                        com = []
                    return
            if CATALOG_LOOP.search(st.code) and re.search(r'\b(GRANT|REVOKE)\b', st.code):
                raise SystemExit('%s: a DO block grants over a catalog query, which means something '
                                 'else at the end of a full script; add an expander to DO_EXPANDERS '
                                 'in scripts/sql-squash.py (statement %d)' % (st.fname, st.seq))
            if 'RAISE EXCEPTION' in st.code.upper() and not re.search(
                    r'\b(GRANT|REVOKE|CREATE|ALTER|DROP|INSERT|UPDATE|DELETE|EXECUTE)\b', re.sub(r"'(?:[^']|'')*'", "''", st.code).upper().replace('RAISE EXCEPTION', '')):
                # a prerequisite check (e.g. the version of a required
                # extension): an install needs it as much as an update
                self.checks.append(st)
                return
            if any(k in st.code for k in KEEP_DO):
                self.privs.append((st.text, (), st.comment, st))
            elif base:
                self.install.append(st)
            else:
                self.log.append('dropped data migration DO block (%s, statement %d)' % (st.fname, st.seq))
            return
        if re.match(r'(SELECT|INSERT|UPDATE|DELETE) ', u):
            if base:
                self.install.append(st)
            else:
                self.log.append('dropped upgrade-time SELECT (%s): %s' % (st.fname, t[:70]))
            return
        m = re.match(r'ALTER (VIEW|SEQUENCE|INDEX|TYPE|DOMAIN|SCHEMA) (IF EXISTS )?(' + QNAME + r') ', t, re.I)
        if m and not re.search(r'\b(RENAME|SET SCHEMA)\b', u):
            kind = {'DOMAIN': 'type'}.get(m.group(1).upper(), m.group(1).lower())
            key = (kind, qname(m.group(3)))
            if key in self.objs:
                self.objs[key].extras.append(st.text)
                return
        m = re.match(r'CREATE POLICY (' + IDENT + r') ON (' + QNAME + r')', t, re.I)
        if m:
            tbl = qname(m.group(2))
            o = self.create(('policy', qname(m.group(1)), tbl), 'policy', st)
            o.owner = ('table', tbl)
            return
        m = re.match(r'DROP POLICY (IF EXISTS )?(' + IDENT + r') ON (' + QNAME + r')', t, re.I)
        if m:
            self.drop(('policy', qname(m.group(2)), qname(m.group(3))), st)
            return
        if re.match(r'(SET|RESET) ', u) and not base:
            self.log.append('dropped upgrade-session setting (%s): %s' % (st.fname, t[:70]))
            return
        # Not modelled: kept as written, in chain order, after the objects.
        # test/t/018_install_equals_upgrade.pl tells whether that is right.
        print('sql-squash: %s: kept verbatim (not modelled): %s' % (st.fname, t[:100]), file=sys.stderr)
        self.verbatim.append(st)

    def alter_table(self, key, rest, st):
        o = self.objs[key]
        m = re.match(r'(ENABLE|DISABLE)( ALWAYS| REPLICA)? TRIGGER (' + IDENT + r')\s*$', rest, re.I)
        if m:
            self.objs[('trigger', qname(m.group(3)), key[1])].extras.append(st.text)
            return
        parts = [p.strip() for p in split_top(rest)]
        if len(parts) > 1 and all(re.match(r'ADD COLUMN ', p, re.I) for p in parts):
            for p in parts:
                self.alter_table(key, p, st)
            return
        m = re.match(r'ALTER COLUMN (' + IDENT + r') DROP NOT NULL$', rest, re.I)
        if m:
            folded = drop_not_null(o.text, qname(m.group(1)))
            if folded is not None:
                o.text = folded
                return
        m = re.match(r'ADD COLUMN (IF NOT EXISTS )?(.*)$', rest, re.I | re.S)
        if m and len(split_top(m.group(2))) == 1:
            coldef = m.group(2).strip().rstrip(';')
            like = re.search(r'\(\s*LIKE (' + QNAME + r')', o.text, re.I)
            col = qname(coldef.split()[0])
            if like and has_column(self.objs[('table', qname(like.group(1)))].text, col):
                # CREATE TABLE (LIKE src) will copy the column from src's
                # final definition: name, type and NOT NULL, not the default
                d = re.search(r'\bDEFAULT\s+(.*?)(\s+(NOT NULL|NULL|CHECK|CONSTRAINT)\b.*)?$', coldef, re.I)
                if d:
                    o.extras.append('ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s;' % (key[1], col, d.group(1)))
                return
            o.text = fold_column(o.text, coldef)
            return
        o.extras.append(st.text)

    def comment_target(self, what, st):
        w = ' '.join(what.split())
        m = re.match(r'(FUNCTION|PROCEDURE|AGGREGATE) (' + QNAME + r')\s*(\((.*)\))?$', w, re.I)
        if m:
            return self.func_key(m.group(2), m.group(4), st)
        m = re.match(r'(TABLE|VIEW|TYPE|SEQUENCE|SCHEMA|INDEX|EVENT TRIGGER|ACCESS METHOD) (' + QNAME + r')$', w, re.I)
        if m:
            return (m.group(1).lower(), qname(m.group(2)))
        m = re.match(r'COLUMN (' + QNAME + r')\.(' + IDENT + r')$', w, re.I)
        if m:
            return ('column', qname(m.group(1)), qname(m.group(2)))
        m = re.match(r'TRIGGER (' + IDENT + r') ON (' + QNAME + r')$', w, re.I)
        if m:
            return ('trigger', qname(m.group(1)), qname(m.group(2)))
        return ('unknown', w)

    def privilege(self, st):
        t = st.norm
        m = re.match(r'(GRANT|REVOKE) (.*?) ON (ALL (FUNCTIONS|PROCEDURES|TABLES|SEQUENCES) IN SCHEMA) (' + IDENT + r') (TO|FROM) (.*)$', t, re.I)
        if m:
            # spell out what "ALL ... IN SCHEMA" covered at this point
            what = m.group(4).upper()
            sch = qname(m.group(5))
            stmts = []
            for k in self.order:
                o = self.objs.get(k)
                if o is None or not k[1].startswith(sch + '.'):
                    continue
                if what == 'FUNCTIONS' and k[0] in ('function', 'aggregate') and not o.define.up.startswith(('CREATE PROCEDURE', 'CREATE OR REPLACE PROCEDURE')):
                    stmts.append(('FUNCTION %s(%s)' % (k[1], ', '.join(k[2])), k))
                elif what == 'PROCEDURES' and k[0] == 'function' and o.define.up.startswith(('CREATE PROCEDURE', 'CREATE OR REPLACE PROCEDURE')):
                    stmts.append(('PROCEDURE %s(%s)' % (k[1], ', '.join(k[2])), k))
                elif what == 'TABLES' and k[0] in ('table', 'view'):
                    stmts.append(('TABLE %s' % k[1], k))
                elif what == 'SEQUENCES' and k[0] == 'sequence':
                    stmts.append(('SEQUENCE %s' % k[1], k))
            com = list(st.comment) + ['-- (was: %s)' % t]
            for target, k in stmts:
                txt = '%s %s ON %s %s %s' % (m.group(1).upper(), m.group(2), target, m.group(6).upper(), m.group(7))
                self.privs.append((txt, (k,), com, st))
                com = []
            return
        keys = self.privilege_targets(st)
        self.privs.append((st.text, tuple(keys), st.comment, st))

    def privilege_targets(self, st):
        t = st.norm
        m = re.match(r'(GRANT|REVOKE) (.*?) ON (FUNCTION|PROCEDURE|ROUTINE|SCHEMA|TYPE|SEQUENCE|TABLE|)\s*(.*?) (TO|FROM) ', t, re.I)
        if not m:
            return []          # role membership
        kind = m.group(3).upper()
        keys = []
        for item in split_top(m.group(4)):
            item = item.strip()
            if kind in ('FUNCTION', 'PROCEDURE', 'ROUTINE'):
                mm = re.match(r'(' + QNAME + r')\s*(\((.*)\))?\s*$', item)
                keys.append(self.func_key(mm.group(1), mm.group(3), st))
            elif kind == 'SCHEMA':
                keys.append(('schema', qname(item)))
            elif kind == 'TYPE':
                keys.append(('type', qname(item)))
            elif kind == 'SEQUENCE':
                keys.append(('sequence', qname(item)))
            else:
                n = qname(item)
                for k in (('table', n), ('view', n), ('sequence', n)):
                    if k in self.objs:
                        keys.append(k)
                        break
        return keys


def has_column(create_text, col):
    m = re.search(r'\(', create_text)
    inside, _ = paren_after(create_text, m.start())
    for c in split_top(strip_comments(inside)):
        toks = c.split()
        if toks and qname(toks[0]) == col:
            return True
    return False


def drop_not_null(create_text, col):
    """The CREATE TABLE with NOT NULL removed from column col, or None."""
    m = re.search(r'\(', create_text)
    inside, end = paren_after(create_text, m.start())
    items = split_top(inside)
    for i, c in enumerate(items):
        toks = strip_comments(c).split()
        if toks and qname(toks[0]) == col:
            if len(re.findall(r'\bNOT NULL\b', c, re.I)) != 1:
                return None
            items[i] = re.sub(r'\s+NOT NULL\b', '', c, flags=re.I)
            return create_text[:m.start() + 1] + ','.join(items) + create_text[end - 1:]
    return None


def fold_column(create_text, coldef):
    """Append a column (attribute) definition to a CREATE TABLE/TYPE."""
    m = re.search(r'\(', create_text)
    inside, end = paren_after(create_text, m.start())
    close = end - 1
    # indentation of the existing column lines
    lines = inside.rstrip().split('\n')
    indent = '    '
    for ln in lines[1:]:
        if ln.strip():
            indent = re.match(r'\s*', ln).group(0)
            break
    body = inside.rstrip()
    sep = ',\n' + indent if '\n' in inside else ', '
    coldef = ' '.join(coldef.split())
    # line the type up with the columns above it
    last = [ln for ln in lines if ln.strip()][0]
    mm = re.match(r'(\s*)(\S+)(\s+)\S', last)
    if '\n' in inside and mm:
        width = len(mm.group(2)) + len(mm.group(3))
        name, _, rest = coldef.partition(' ')
        if len(name) < width:
            coldef = name.ljust(width) + rest
    new = body + sep + coldef + ('\n' if '\n' in inside else '')
    return create_text[:m.start() + 1] + new + create_text[close:]


# ---------------------------------------------------------------------------
# Chain and output
# ---------------------------------------------------------------------------
def version_key(v):
    return tuple(int(x) for x in v.split('.'))


def chain(ext):
    ctl = open(os.path.join(ROOT, ext + '.control'), encoding='utf-8').read()
    target = re.search(r"default_version\s*=\s*'([^']+)'", ctl).group(1)
    ups = {}
    for f in os.listdir(SQL):
        m = re.match(re.escape(ext) + r'--([0-9.]+)--([0-9.]+)\.sql$', f)
        if m:
            ups[m.group(1)] = (m.group(2), f)
    files = [ext + '--1.0.sql']
    v = '1.0'
    while v != target:
        if v not in ups:
            raise SystemExit('%s: no upgrade path from %s to %s' % (ext, v, target))
        v, f = ups[v]
        files.append(f)
    return target, files


def refs(text):
    """Qualified names referenced by a piece of SQL."""
    code = strip_comments(text)
    return set(qname(m.group(0)) for m in re.finditer(
        r'\b(?:' + '|'.join(SCHEMAS) + r')\s*\.\s*' + IDENT, code))


def hard_text(o):
    """The part of an object's definition that must resolve at creation."""
    t = o.text
    if o.kind in ('function',):
        code = strip_comments(t)
        # SQL-standard bodies are parsed at creation; $$ bodies are not
        m = re.search(r'\$([A-Za-z_]*)\$', code)
        if m:
            return code[:m.start()]
        m = re.search(r"\bAS\s+'", code, re.I)
        if m:
            return code[:m.start()]
        return code
    return t + '\n' + '\n'.join(o.extras)


def render(ext, version, files, model):
    objs = model.objs
    by_name = {}
    for k, o in objs.items():
        by_name.setdefault(k[1], []).append(k)

    def deps(o):
        d = set()
        for n in refs(hard_text(o)):
            for k in by_name.get(n, []):
                if k != o.key and objs[k].kind not in ('index', 'trigger'):
                    d.add(k)
        if o.owner:
            d.add(o.owner)
        return d

    def sort_key(k):
        o = objs[k]
        sec = SECTION_OF[o.kind]
        if o.kind in ('index',):
            sec = SECTION_OF['table']
        group = o.first.heading if sec == 3 else ''
        return (sec, group_rank.get((sec, group), 0), o.first.seq, k[0])

    group_rank = {}
    for k in sorted(objs, key=lambda k: objs[k].first.seq):
        o = objs[k]
        sec = SECTION_OF[o.kind]
        g = o.first.heading if sec == 3 else ''
        group_rank.setdefault((sec, g), len(group_rank))

    order = []
    done = set()
    visiting = set()

    def visit(k):
        if k in done:
            return
        if k in visiting:
            return          # a cycle through a soft reference: chain order decides
        visiting.add(k)
        for d in sorted(deps(objs[k]), key=sort_key):
            if d in objs:
                visit(d)
        visiting.discard(k)
        done.add(k)
        order.append(k)

    # tables pull their indexes right after them
    for k in sorted(objs, key=sort_key):
        visit(k)

    out = []
    w = out.append
    w('-- %s %s: full install script.' % (ext, version))
    w('--')
    w('-- GENERATED by scripts/sql-squash.py from the upgrade chain')
    for ln in textwrap.wrap(', '.join(files), 74, break_on_hyphens=False):
        w('--   ' + ln)
    w('-- DO NOT EDIT BY HAND: change SQL in the open upgrade script and')
    w('-- regenerate with `python3 scripts/sql-squash.py` (see sql/README.md).')
    w('-- test/t/018_install_equals_upgrade.pl checks that this file is current and')
    w('-- that installing it equals installing 1.0 and updating step by step.')
    w('--')
    w('-- Every object appears once, with its current definition; the privilege')
    w('-- model is in one section at the end.')
    w('\\echo Use "CREATE EXTENSION %s" to load this file. \\quit' % ext)
    w('')
    w('-- Function bodies refer to objects defined further down.')
    w('SET LOCAL check_function_bodies = off;')
    for st in model.checks:
        w('')
        w('-- Prerequisite (from %s).' % st.fname)
        for c in st.comment:
            w(c)
        w(st.text)
    last = (None, None)
    for k in order:
        o = objs[k]
        sec = SECTION_OF[o.kind]
        if o.kind == 'index':
            sec = SECTION_OF['table']
        grp = o.first.heading if sec == 3 else ''
        if (sec, grp) != last:
            if sec != last[0]:
                w('')
                w('-- ' + '=' * 74)
                w('-- ' + SECTION_TITLES[sec])
                w('-- ' + '=' * 74)
            if sec == 3 and grp != last[1]:
                w('')
                w('-- ' + '-' * 74)
                for ln in textwrap.wrap(grp or 'General', 74):
                    w('-- ' + ln)
                w('-- ' + '-' * 74)
            last = (sec, grp)
        w('')
        com = [c for c in o.define.comment]
        for c in com:
            w(c)
        text = o.text
        if o.kind in ('function', 'aggregate', 'view', 'trigger'):
            # defined once here: a plain CREATE also proves it
            text = re.sub(r'^CREATE\s+OR\s+REPLACE\s+', 'CREATE ', text, flags=re.I)
        w(text)
        for e in o.extras:
            w(e)
        if o.config is not None:
            w(o.config.text)
        if o.comment is not None:
            w(o.comment.text)
        for c in o.colcomments:
            w(o.colcomments[c].text)
    if model.verbatim:
        w('')
        w('-- ' + '=' * 74)
        w('-- Kept as written, in chain order (not modelled by scripts/sql-squash.py)')
        w('-- ' + '=' * 74)
        for st in model.verbatim:
            w('')
            w('-- from %s' % st.fname)
            for c in st.comment:
                w(c)
            w(st.text)
    if model.install:
        w('')
        w('-- ' + '=' * 74)
        w('-- ' + SECTION_TITLES[6])
        w('-- ' + '=' * 74)
        for st in model.install:
            w('')
            for c in st.comment:
                w(c)
            w(st.text)
    w('')
    w('-- ' + '=' * 74)
    w('-- ' + SECTION_TITLES[7])
    w('-- ' + '=' * 74)
    prev = None
    for txt, keys, com, st in model.privs:
        if st.fname != prev:
            w('')
            w('-- from %s' % st.fname)
            prev = st.fname
        for c in com:
            w(c)
        w(txt if txt.rstrip().endswith(';') else txt + ';')
    w('')
    return '\n'.join(out)


def squash(ext):
    version, files = chain(ext)
    model = Model(ext)
    seq = 0
    for i, f in enumerate(files):
        stmts, seq = split_statements(os.path.join(SQL, f), seq)
        for st in stmts:
            model.apply(st, base=(i == 0))
    return version, render(ext, version, files, model), model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('ext', nargs='*', default=list(EXTENSIONS))
    ap.add_argument('--out', help="output file for one extension ('-' for stdout)")
    ap.add_argument('--check', action='store_true', help='fail if a written file is stale')
    ap.add_argument('-v', '--verbose', action='store_true')
    a = ap.parse_args()
    stale = False
    for ext in a.ext:
        version, text, model = squash(ext)
        if a.verbose:
            for ln in model.log:
                print('%s: %s' % (ext, ln), file=sys.stderr)
        path = a.out or os.path.join(SQL, '%s--%s.sql' % (ext, version))
        if path == '-':
            sys.stdout.write(text)
            continue
        if a.check:
            cur = open(path, encoding='utf-8').read() if os.path.exists(path) else None
            if cur != text:
                print('%s is stale: run python3 scripts/sql-squash.py' % os.path.relpath(path, ROOT), file=sys.stderr)
                stale = True
            continue
        with open(path, 'w', encoding='utf-8') as fh:
            fh.write(text)
    return 1 if stale else 0


if __name__ == '__main__':
    sys.exit(main())
