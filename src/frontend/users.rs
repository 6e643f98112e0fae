//! The configured users of a cluster, by name, with the SCRAM verifiers derived once at load
//! (both protocols' logins look users up here).

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{ClientSecret, UserConfig};
use crate::wire::pg::auth::ScramVerifier;

/// A configured user with its precomputed SCRAM verifier.
#[derive(Debug)]
pub struct UserAuth {
    pub config: UserConfig,
    pub scram: Option<ScramVerifier>,
}

/// All users, by name.
pub type UserDirectory = HashMap<String, Arc<UserAuth>>;

/// Build the directory; SCRAM verifiers for plain passwords are derived once, with a fresh salt.
pub fn build_users(users: &[UserConfig]) -> UserDirectory {
    users
        .iter()
        .map(|u| {
            let scram = match &u.secret {
                ClientSecret::ScramVerifier(v) => ScramVerifier::parse(v),
                ClientSecret::Password(p) => {
                    let salt: [u8; 16] = rand::random();
                    Some(ScramVerifier::from_password(p, &salt, 4096))
                }
            };
            (
                u.name.clone(),
                Arc::new(UserAuth {
                    config: u.clone(),
                    scram,
                }),
            )
        })
        .collect()
}
