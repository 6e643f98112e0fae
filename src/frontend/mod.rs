//! Client side of the proxy: one task per client connection, per protocol.

pub mod causal;
pub mod cluster;
pub mod lines;
pub mod mysql;
pub mod pg;
pub mod settings;
pub mod slots;
pub mod users;

/// Free space a client read asks for (a big message is then read in few system calls).
pub(crate) const READ_CHUNK: usize = 8 * 1024;

#[cfg(test)]
mod task_size_tests {
    /// The size of the future `f` returns (without running it).
    fn future_size3<A, B, C, R>(_: &impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Each accepted client is a task holding its whole session state machine, copied in when
    /// it is spawned (so all of it is resident): it is the largest part of the memory an idle
    /// client costs. Rarely run steps (opening a server connection, causal checks, a MySQL
    /// session in the shared accept task) are boxed to keep it small; a new await of a large
    /// future on the session path should be boxed the same way.
    #[test]
    fn session_tasks_stay_small() {
        let pg = future_size3(&crate::frontend::pg::session::serve_client);
        assert!(pg <= 3 * 1024, "PostgreSQL session future: {pg} bytes");
        let my = future_size3(&crate::frontend::mysql::serve_mysql_client);
        assert!(my <= 64, "MySQL session future (boxed): {my} bytes");
    }
}
