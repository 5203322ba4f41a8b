/* modules: every module with a part in the shards, a run or /metrics, in the
 * order they register (like nginx's objs/ngx_modules.c). core/main.c calls
 * it at start-up; tests that drive connections without main call it too. */
#ifndef AGATE_MODULES_H
#define AGATE_MODULES_H

/* Main thread, before anything else; registering twice changes nothing. */
void modules_register(void);

#endif
