/* version: agate's release version, one place. */
#ifndef AGATE_VERSION_H
#define AGATE_VERSION_H
#define AGATE_VERSION "0.1.0"
#endif
