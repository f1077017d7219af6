#ifndef CCAP_SHIM_H
#define CCAP_SHIM_H
// libcap: used on the host side only, to turn capability names into numbers.
#include <sys/capability.h>
#endif
