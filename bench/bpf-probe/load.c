// The recorder loop of the probe: loads a BPF object, follows one cgroup v2, writes a JSON line per event.
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
struct ev { unsigned kind, pid; unsigned long long flags, arg; char path[256]; };
static long n; static FILE *out; static volatile int stop;
static void on_sig(int s) { stop = 1; }
static int handle(void *ctx, void *data, size_t sz) {
    struct ev *e = data; n++;
    fprintf(out, "{\"kind\":%u,\"pid\":%u,\"flags\":\"0x%llx\",\"path\":\"%s\"}\n", e->kind, e->pid, e->flags, e->path);
    return 0;
}
int main(int argc, char **argv) {
    // argv[1]: cgroup directory to follow
    struct stat st; if (stat(argv[1], &st)) { perror("stat"); return 1; }
    unsigned long long cg = st.st_ino;   // cgroup v2 id is the directory's inode
    struct bpf_object *o = bpf_object__open_file(argc > 3 ? argv[3] : "rec.bpf.o", NULL);
    if (!o || bpf_object__load(o)) { fprintf(stderr, "load failed\n"); return 1; }
    struct bpf_program *p; bpf_object__for_each_program(p, o) { if (!bpf_program__attach(p)) { fprintf(stderr, "attach %s failed\n", bpf_program__name(p)); return 1; } }
    int cfg = bpf_object__find_map_fd_by_name(o, "cfg"); unsigned k = 0;
    if (bpf_map_update_elem(cfg, &k, &cg, 0)) { perror("cfg"); return 1; }
    out = fopen(argc > 2 ? argv[2] : "/dev/null", "w");
    struct ring_buffer *rb = ring_buffer__new(bpf_object__find_map_fd_by_name(o, "rb"), handle, NULL, NULL);
    signal(SIGTERM, on_sig); signal(SIGINT, on_sig);
    printf("ready cg=%llu\n", cg); fflush(stdout);
    while (!stop) ring_buffer__poll(rb, 10);
    ring_buffer__consume(rb);
    fclose(out);
    fprintf(stderr, "events=%ld\n", n);
    return 0;
}
