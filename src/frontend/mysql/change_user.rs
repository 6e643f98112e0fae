//! COM_CHANGE_USER: re-authenticate the client, then start over as a fresh session of the new
//! user (what the server forgets at a change of user, the session forgets too).

use super::*;

impl Relay {
    /// COM_CHANGE_USER: re-authenticate, then start over as a fresh session of the new user.
    pub(super) async fn change_user(
        &mut self,
        p: crate::wire::mysql::packet::Packet,
    ) -> Result<(), MyError> {
        let Some(cu) = parse_change_user(&p.payload, self.login.capabilities) else {
            return Err(MyError::protocol("malformed COM_CHANGE_USER"));
        };
        let leaks = crate::frontend::mysql::login::leaks_password_on_full_auth(
            &self.client,
            self.login.capabilities,
            &cu.attributes,
        );
        let ctx = self.ctx.clone();
        let user = crate::frontend::mysql::login::change_user(
            &mut self.client,
            &ctx.name,
            &ctx.users(),
            &ctx.mysql,
            &cu.username,
            leaks,
        )
        .await?;
        self.release_all();
        // The pools the session used are the old login's: the next checkouts look up the new
        // login's pools (else requests would run as the old user).
        self.pools = crate::frontend::slots::Slots::new(self.backends.len());
        self.login.user = user;
        if let Some(cs) = cu.charset.and_then(|c| u8::try_from(c).ok()) {
            self.login.charset = cs;
        }
        self.database = cu.database.filter(|d| !d.is_empty());
        self.login.database = self.database.clone();
        self.login_key = Relay::login_hash(&self.login);
        self.history.clear();
        self.history_hashes.clear();
        self.stmts.clear();
        self.cursors.clear();
        self.txn = None;
        self.txn_log.clear();
        self.autocommit = self.default_autocommit.unwrap_or(true);
        self.status = if self.autocommit {
            status::AUTOCOMMIT
        } else {
            0
        };
        self.pinned = None;
        self.pin_gauge = None;
        self.diag_reset();
        self.wait_timeout = None;
        self.route_override = RouteOverride::Auto;
        self.consistency = None;
        self.wrote = false;
        self.causal_gtid = None;
        self.causal_since = None;
        self.last_used = None;
        self.start().await
    }
}
