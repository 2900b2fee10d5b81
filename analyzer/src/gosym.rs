//! What a Go function name says about its package: whether a frame is user code or part of the
//! Go runtime and standard library.

/// The import path of the package that defines Go function `name`, e.g. `net/http` for
/// `net/http.(*conn).serve` and `example.com/svc/cache` for `example.com/svc/cache.New.func1`.
pub fn package_path(name: &str) -> &str {
    // Type parameters (`[...]` or `[go.shape.int]`) may contain dots and slashes; drop them.
    let name = name.split('[').next().unwrap_or(name);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].find('.') {
        Some(dot) => &name[..last_slash + dot],
        None => name,
    }
}

/// True for frames of the program itself or its third-party modules, false for the runtime, the
/// standard library, unsymbolized addresses and C functions. Standard-library import paths have no
/// dot in their first element (`runtime`, `net/http`, `vendor/golang.org/x/net`); module paths do
/// (`github.com/...`), and package `main` is always user code.
pub fn is_user_function(name: &str) -> bool {
    // cgo's generated wrappers (`main._Cfunc_f`, `main._cgo_…`) stand between the user's call
    // and C; the line worth naming is the user's call.
    if name.contains("._Cfunc_") || name.contains("._cgo_") {
        return false;
    }
    let package = package_path(name);
    if package == "main" {
        return true;
    }
    if package == name {
        // No package qualifier: a C symbol or a raw address.
        return false;
    }
    let first_element = package.split('/').next().unwrap_or(package);
    first_element.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_paths() {
        assert_eq!(package_path("net/http.(*conn).serve"), "net/http");
        assert_eq!(package_path("main.main.func1"), "main");
        assert_eq!(
            package_path("example.com/svc/cache.(*LRU[...]).Get"),
            "example.com/svc/cache"
        );
        assert_eq!(
            package_path("github.com/a/b.Map[go.shape.struct { X int }]"),
            "github.com/a/b"
        );
    }

    #[test]
    fn user_code_is_main_or_module_paths() {
        for user in [
            "main.leaky",
            "main.(*server).handle.func2",
            "github.com/acme/app/worker.Run",
            "example.com/m.F[...]",
        ] {
            assert!(is_user_function(user), "{user}");
        }
        assert!(!is_user_function("main._Cfunc_leak"));
        assert!(!is_user_function("main._cgo_cmalloc"));
        for std in [
            "runtime.gopark",
            "time.AfterFunc",
            "context.WithDeadlineCause",
            "net/http.(*conn).serve",
            "vendor/golang.org/x/net/http2.(*Framer).ReadFrame",
            "internal/poll.(*FD).Read",
            "0x4012ab",
            "malloc",
        ] {
            assert!(!is_user_function(std), "{std}");
        }
    }
}
