/* impl_select.c - choosing implementations per kernel family (impl_select.h). */
#include "harness/impl_select.h"

#include "common/errmsg.h"

#include <stdio.h>
#include <string.h>

#define Q35_FAMILY_VIEW(fam)                                                                                       \
    int fam##_n_entries(void) { return 1 + fam##_n_impls; }                                                        \
    const fam##_impl *fam##_entry(int i)                                                                           \
    {                                                                                                              \
        return i == 0 ? &fam##_ref_impl : i > 0 && i <= fam##_n_impls ? &fam##_impls[i - 1] : NULL;                \
    }                                                                                                              \
    const fam##_impl *fam##_named(const char *name)                                                                \
    {                                                                                                              \
        return name && !strcmp(name, fam##_ref_impl.name) ? &fam##_ref_impl : fam##_find(name);                    \
    }
Q35_FAMILY_VIEW(linear)
Q35_FAMILY_VIEW(conv)
Q35_FAMILY_VIEW(deltarule)
Q35_FAMILY_VIEW(attention)
Q35_FAMILY_VIEW(moe)

const char *q35_family_name(int fam)
{
    static const char *names[Q35_FAM_COUNT] = {"linear", "conv", "deltarule", "attention", "moe"};
    return fam >= 0 && fam < Q35_FAM_COUNT ? names[fam] : "?";
}

/* Every entry, lossy ones included (what names resolve against). */
static int family_size_all(int fam)
{
    switch (fam) {
    case Q35_FAM_LINEAR: return linear_n_entries();
    case Q35_FAM_CONV: return conv_n_entries();
    case Q35_FAM_DELTARULE: return deltarule_n_entries();
    case Q35_FAM_ATTENTION: return attention_n_entries();
    case Q35_FAM_MOE: return moe_n_entries();
    }
    return 0;
}

/* The entries `validate --impl all` combines: a lossy entry (linear tiled-bf16dot / tiled-amx,
 * moe grouped-bf16dot / grouped-amx, which round activations to bf16) is opt-in, named with
 * --impl; lossy entries sit at the end of their table. */
int q35_family_size(int fam)
{
    int n = family_size_all(fam);
    if (fam == Q35_FAM_LINEAR)
        while (n > 0 && linear_entry(n - 1)->lossy) n--;
    if (fam == Q35_FAM_MOE)
        while (n > 0 && moe_entry(n - 1)->lossy) n--;
    return n;
}

const char *q35_family_entry(int fam, int i)
{
    if (i < 0 || i >= family_size_all(fam)) return NULL;
    switch (fam) {
    case Q35_FAM_LINEAR: return linear_entry(i)->name;
    case Q35_FAM_CONV: return conv_entry(i)->name;
    case Q35_FAM_DELTARULE: return deltarule_entry(i)->name;
    case Q35_FAM_ATTENTION: return attention_entry(i)->name;
    case Q35_FAM_MOE: return moe_entry(i)->name;
    }
    return NULL;
}

void q35_impls_set(q35_impls *im, int fam, int i)
{
    switch (fam) {
    case Q35_FAM_LINEAR: im->linear = linear_entry(i); break;
    case Q35_FAM_CONV: im->conv = conv_entry(i); break;
    case Q35_FAM_DELTARULE:
        im->deltarule = deltarule_entry(i);
        im->deltarule_decode = im->deltarule == &deltarule_ref_impl ? &deltarule_ref_impl : deltarule_find("recurrent");
        break;
    case Q35_FAM_ATTENTION: im->attention = attention_entry(i); break;
    case Q35_FAM_MOE: im->moe = moe_entry(i); break;
    }
}

static int find_entry(int fam, const char *name)
{
    for (int i = 0; i < family_size_all(fam); i++)
        if (!strcmp(q35_family_entry(fam, i), name)) return i;
    return -1;
}

void q35_impls_default(q35_impls *im)
{
    static const char *def[Q35_FAM_COUNT] = {"tiled", "direct", "auto", "flash", "grouped"};
    memset(im, 0, sizeof *im);
    for (int f = 0; f < Q35_FAM_COUNT; f++) q35_impls_set(im, f, find_entry(f, def[f]));
}

void q35_impls_ref(q35_impls *im)
{
    for (int f = 0; f < Q35_FAM_COUNT; f++) q35_impls_set(im, f, find_entry(f, "ref"));
}

int q35_impls_parse(const char *spec, q35_impls *im, char *err, size_t errlen)
{
    const q35_impls run = *im; /* the run's settings stay: threads, auto's crossover */
    q35_impls_default(im);
    im->threads = run.threads;
    im->dr_crossover = run.dr_crossover;
    if (!spec || !*spec || !strcmp(spec, "default")) return 0;
    if (!strcmp(spec, "ref")) { q35_impls_ref(im); return 0; }
    char buf[512];
    if (strlen(spec) >= sizeof buf) { q35_errmsg(err, errlen, "--impl: spec too long"); return -1; }
    strcpy(buf, spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            q35_errmsg(err, errlen, "--impl: '%s' is not FAMILY=NAME (families: linear, conv, deltarule, "
                       "attention, moe; or 'ref' / 'default')", tok);
            return -1;
        }
        *eq = 0;
        int fam = -1;
        for (int f = 0; f < Q35_FAM_COUNT; f++)
            if (!strcmp(tok, q35_family_name(f))) fam = f;
        if (fam < 0) {
            q35_errmsg(err, errlen, "--impl: unknown family '%s' (linear, conv, deltarule, attention, moe)", tok);
            return -1;
        }
        int i = find_entry(fam, eq + 1);
        if (i < 0) {
            char list[256] = "";
            for (int j = 0; j < family_size_all(fam); j++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                         q35_family_entry(fam, j));
            q35_errmsg(err, errlen, "--impl: %s has no implementation '%s' (%s)", tok, eq + 1, list);
            return -1;
        }
        q35_impls_set(im, fam, i);
    }
    return 0;
}

void q35_impls_format(const q35_impls *im, char *buf, size_t n)
{
    snprintf(buf, n, "linear=%s,conv=%s,deltarule=%s,attention=%s,moe=%s", im->linear->name, im->conv->name,
             im->deltarule->name, im->attention->name, im->moe->name);
}

int q35_impls_is_ref(const q35_impls *im)
{
    return !strcmp(im->linear->name, "ref") && !strcmp(im->conv->name, "ref") && !strcmp(im->deltarule->name, "ref") &&
           !strcmp(im->attention->name, "ref") && !strcmp(im->moe->name, "ref");
}
