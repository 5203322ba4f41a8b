/* modules: every module with a part in the shards, a run, /metrics or the
 * configuration, in the order they register (like nginx's objs/ngx_modules.c).
 * core/main.c calls it at start-up, before cfg_defaults (a module's config
 * section must be registered first); tests that drive connections or load a
 * configuration without main call it too. */
#ifndef AGATE_MODULES_H
#define AGATE_MODULES_H

/* Main thread, before anything else; registering twice changes nothing. */
void modules_register(void);

#endif
