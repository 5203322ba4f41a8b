/* schema_tables: short names for writing schema tables (proto/schema.c,
 * proto/validate.c), so a table reads like the zod schema it transcribes.
 * Include from a .c file only, after proto/schema.h: the names are short
 * enough to collide anywhere else. */
#ifndef AGATE_SCHEMA_TABLES_H
#define AGATE_SCHEMA_TABLES_H

#include "proto/schema.h"

#define REQ     SCHEMA_REQ
#define OPT     SCHEMA_OPT
#define REQ_OF  SCHEMA_REQ_OF
#define OPT_OF  SCHEMA_OPT_OF
#define ENUM    SCHEMA_ENUM
#define END     SCHEMA_END
#define SHAPE(fields)        { NULL, 0, NULL, fields }
#define UNION(tag, variants) { tag, sizeof(tag) - 1, variants, NULL }

#endif
