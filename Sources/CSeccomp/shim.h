#ifndef CSECCOMP_SHIM_H
#define CSECCOMP_SHIM_H

#include <seccomp.h>
#include <stdint.h>

// Swift imports neither function-like macros (SCMP_ACT_ERRNO) nor C variadics
// (seccomp_rule_add), so this header re-exposes what we need as inline functions.

static inline uint32_t cseccomp_act_allow(void) { return SCMP_ACT_ALLOW; }
static inline uint32_t cseccomp_act_errno(uint16_t err) { return SCMP_ACT_ERRNO(err); }
static inline uint32_t cseccomp_act_kill_thread(void) { return SCMP_ACT_KILL_THREAD; }
static inline uint32_t cseccomp_act_kill_process(void) { return SCMP_ACT_KILL_PROCESS; }
static inline uint32_t cseccomp_act_trap(void) { return SCMP_ACT_TRAP; }
static inline uint32_t cseccomp_act_log(void) { return SCMP_ACT_LOG; }
static inline uint32_t cseccomp_act_notify(void) { return SCMP_ACT_NOTIFY; }
static inline int32_t cseccomp_nr_error(void) { return __NR_SCMP_ERROR; }

#endif
